// The importers, each fed small fixtures written here in its real format: .mat files through
// matio (MAT5, compressed MAT5 and v7.3), Python 2 style pickles through /usr/bin/python3, and
// interchange folders. For every format: 1-based indices become 0-based, "one column per item"
// and "one row per item" matrices land the right way round, the splits come out right; and every
// broken input is refused with one line naming the file (and the variable), leaving no output.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#ifdef ZSCRGAN_HAVE_MATIO
#include <matio.h>
#include <zlib.h>
#endif

#include "data_test_util.h"
#include "data/dataset.h"
#include "import/importers.h"
#include "formats/npy.h"

namespace {

namespace fs = std::filesystem;
using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

// ---- shared checks ----------------------------------------------------------------------------

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// run_import must fail with one line holding every one of `needles`, and leave `parent` as it
// was (no output folder, no temporary sibling).
void expect_refused(const zscrgan::ImportOptions& o, const std::vector<std::string>& needles) {
  const fs::path parent = fs::path(o.output).parent_path();
  const std::vector<std::string> before = entries(parent);
  std::ostringstream out;
  const std::string msg = error_of([&] { zscrgan::run_import(o, out); });
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' in: " << msg;
  EXPECT_FALSE(fs::exists(o.output)) << msg;
  EXPECT_EQ(entries(parent), before) << msg;
  EXPECT_TRUE(out.str().empty());
}

#ifdef ZSCRGAN_HAVE_MATIO

std::vector<float> row_of(const zscrgan::HostMatrix& m, int64_t r) {
  return std::vector<float>(m.row(r), m.row(r) + m.cols);
}

// ---- writing .mat files -----------------------------------------------------------------------

template <typename T> struct MatType;
template <> struct MatType<double> {
  static constexpr matio_classes cls = MAT_C_DOUBLE;
  static constexpr matio_types type = MAT_T_DOUBLE;
};
template <> struct MatType<float> {
  static constexpr matio_classes cls = MAT_C_SINGLE;
  static constexpr matio_types type = MAT_T_SINGLE;
};
template <> struct MatType<uint16_t> {
  static constexpr matio_classes cls = MAT_C_UINT16;
  static constexpr matio_types type = MAT_T_UINT16;
};
template <> struct MatType<int32_t> {
  static constexpr matio_classes cls = MAT_C_INT32;
  static constexpr matio_types type = MAT_T_INT32;
};

class MatWriter {
 public:
  explicit MatWriter(const std::string& path, mat_ft version = MAT_FT_MAT5,
                     matio_compression compression = MAT_COMPRESSION_NONE)
      : path_(path), compression_(compression) {
    mat_ = Mat_CreateVer(path.c_str(), nullptr, version);
    if (!mat_) ADD_FAILURE() << "cannot create " << path;
  }
  ~MatWriter() {
    if (mat_) Mat_Close(mat_);
  }
  // A rows x cols MATLAB matrix; `column_major` holds element (r, c) at c * rows + r.
  template <typename T>
  void put(const std::string& name, size_t rows, size_t cols, std::vector<T> column_major) {
    ASSERT_EQ(column_major.size(), rows * cols) << name;
    size_t dims[2] = {rows, cols};
    matvar_t* v = Mat_VarCreate(name.c_str(), MatType<T>::cls, MatType<T>::type, 2, dims,
                                column_major.data(), MAT_F_DONT_COPY_DATA);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(Mat_VarWrite(mat_, v, compression_), 0) << name;
    Mat_VarFree(v);  // does not free the borrowed data
  }
  // The same matrix given by a function of (row, column).
  template <typename T>
  void put_fn(const std::string& name, size_t rows, size_t cols,
              const std::function<T(size_t, size_t)>& f) {
    std::vector<T> v(rows * cols);
    for (size_t c = 0; c < cols; ++c)
      for (size_t r = 0; r < rows; ++r) v[c * rows + r] = f(r, c);
    put(name, rows, cols, std::move(v));
  }
  // An n x 1 column (or 1 x n row) vector.
  template <typename T>
  void put_vector(const std::string& name, const std::vector<T>& v, bool row = false) {
    put(name, row ? 1 : v.size(), row ? v.size() : 1, v);
  }
  // A C x 1 cell array of strings (xlsa17's allclasses_names).
  void put_names(const std::string& name, const std::vector<std::string>& names) {
    size_t dims[2] = {names.size(), 1};
    matvar_t* cell = Mat_VarCreate(name.c_str(), MAT_C_CELL, MAT_T_CELL, 2, dims, nullptr, 0);
    ASSERT_NE(cell, nullptr);
    for (size_t i = 0; i < names.size(); ++i) {
      size_t sdims[2] = {1, names[i].size()};
      matvar_t* s = Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UTF8, 2, sdims,
                                  const_cast<char*>(names[i].data()), 0);
      Mat_VarSetCell(cell, static_cast<int>(i), s);
    }
    EXPECT_EQ(Mat_VarWrite(mat_, cell, compression_), 0);
    Mat_VarFree(cell);
  }
  // A sparse rows x cols double matrix from (row, col, value) triplets.
  void put_sparse(const std::string& name, size_t rows, size_t cols,
                  std::vector<std::tuple<size_t, size_t, double>> triplets) {
    std::sort(triplets.begin(), triplets.end(), [](const auto& a, const auto& b) {
      return std::get<1>(a) != std::get<1>(b) ? std::get<1>(a) < std::get<1>(b)
                                              : std::get<0>(a) < std::get<0>(b);
    });
    std::vector<mat_uint32_t> ir, jc(cols + 1, 0);
    std::vector<double> data;
    for (const auto& [r, c, v] : triplets) {
      ir.push_back(static_cast<mat_uint32_t>(r));
      data.push_back(v);
      ++jc[c + 1];
    }
    for (size_t c = 0; c < cols; ++c) jc[c + 1] += jc[c];
    mat_sparse_t s{};
    s.nzmax = static_cast<mat_uint32_t>(data.size());
    s.ir = ir.data();
    s.nir = static_cast<mat_uint32_t>(ir.size());
    s.jc = jc.data();
    s.njc = static_cast<mat_uint32_t>(jc.size());
    s.ndata = static_cast<mat_uint32_t>(data.size());
    s.data = data.data();
    size_t dims[2] = {rows, cols};
    matvar_t* v = Mat_VarCreate(name.c_str(), MAT_C_SPARSE, MAT_T_DOUBLE, 2, dims, &s,
                                MAT_F_DONT_COPY_DATA);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(Mat_VarWrite(mat_, v, compression_), 0);
    Mat_VarFree(v);
  }

 private:
  std::string path_;
  matio_compression compression_;
  mat_t* mat_ = nullptr;
};

// ---- xlsa17 -----------------------------------------------------------------------------------

// 12 images of 5 classes (1-based class numbers 1..5), 3-d features, 4-d attributes.
// Seen (trainval) classes 1, 3, 4; unseen (test_unseen) classes 2, 5.
struct Xlsa17Fixture {
  int64_t dim = 3, att_dim = 4, classes = 5;
  std::vector<double> labels = {1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 3};
  std::vector<double> trainval_loc = {11, 1, 3, 8, 4, 12};  // images 10, 0, 2, 7, 3, 11
  std::vector<double> test_unseen_loc = {2, 5, 10, 7};      // images 1, 4, 9, 6
  std::vector<double> test_seen_loc = {6, 9};
  std::vector<double> train_loc = {11, 1, 3, 6};  // not a subset of trainval_loc, as published
  std::vector<double> val_loc = {8, 4, 12};
  bool with_train_val_loc = true;
  bool single_precision = false;    // features and att as single
  bool integer_indices = false;     // locs uint16 row vectors, labels int32
  bool features_one_row_per_image = false;
  size_t extra_feature_columns = 0;
  std::string omit;                 // a variable to leave out
  mat_ft version = MAT_FT_MAT5;
  matio_compression compression = MAT_COMPRESSION_NONE;
  std::function<double(size_t, size_t)> feature = [](size_t d, size_t i) {
    return 100.0 * i + d + 0.5;  // (dimension, image)
  };

  static double att(size_t a, size_t c) { return 10.0 * c + a + 0.25; }

  void write(const fs::path& dir) const {
    fs::create_directories(dir);
    {
      MatWriter w((dir / "res101.mat").string(), version, compression);
      const size_t n = labels.size() + extra_feature_columns;
      if (omit != "features") {
        if (features_one_row_per_image) {
          w.put_fn<double>("features", n, dim, [&](size_t i, size_t d) { return feature(d, i); });
        } else if (single_precision) {
          w.put_fn<float>("features", dim, n, [&](size_t d, size_t i) {
            return static_cast<float>(feature(d, i));
          });
        } else {
          w.put_fn<double>("features", dim, n, feature);
        }
      }
      if (omit != "labels") {
        if (integer_indices) {
          std::vector<int32_t> l(labels.begin(), labels.end());
          w.put_vector("labels", l);
        } else {
          w.put_vector("labels", labels);
        }
      }
    }
    MatWriter w((dir / "att_splits.mat").string(), version, compression);
    auto put_att = [&](const char* name, double scale) {
      if (omit == name) return;
      if (single_precision)
        w.put_fn<float>(name, att_dim, classes, [&](size_t a, size_t c) {
          return static_cast<float>(scale * att(a, c));
        });
      else
        w.put_fn<double>(name, att_dim, classes,
                         [&](size_t a, size_t c) { return scale * att(a, c); });
    };
    put_att("att", 1.0);
    put_att("original_att", 100.0);
    std::vector<std::string> names;
    for (int64_t c = 0; c < classes; ++c) names.push_back("class_" + std::to_string(c + 1));
    if (version == MAT_FT_MAT5) w.put_names("allclasses_names", names);
    auto put_loc = [&](const char* name, const std::vector<double>& loc) {
      if (omit == name) return;
      if (integer_indices) {
        std::vector<uint16_t> l(loc.begin(), loc.end());
        w.put_vector(name, l, /*row=*/true);
      } else {
        w.put_vector(name, loc);
      }
    };
    put_loc("trainval_loc", trainval_loc);
    put_loc("test_unseen_loc", test_unseen_loc);
    put_loc("test_seen_loc", test_seen_loc);
    if (with_train_val_loc) {
      put_loc("train_loc", train_loc);
      put_loc("val_loc", val_loc);
    }
  }
};

zscrgan::ImportOptions xlsa17_options(const ScopedTempDir& tmp) {
  zscrgan::ImportOptions o;
  o.format = "xlsa17";
  o.input = tmp.file("AWA_like");
  o.output = tmp.file("out/AWA");
  fs::create_directories(tmp.path() / "out");
  return o;
}

// The dataset the default fixture must import to.
void expect_default_xlsa17(const zscrgan::Dataset& d, double att_scale = 1.0) {
  const std::vector<int64_t> images = {10, 0, 2, 7, 3, 11, 1, 4, 9, 6};  // trainval, test_unseen
  const std::vector<int64_t> labels = {0, 0, 2, 2, 3, 2, 1, 4, 4, 1};   // 0-based classes
  EXPECT_EQ(d.train_classes, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(d.test_classes, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(d.image_labels, labels);
  ASSERT_EQ(d.image_features.rows, 10);
  ASSERT_EQ(d.image_features.cols, 3);
  for (size_t k = 0; k < images.size(); ++k)
    for (int64_t dim = 0; dim < 3; ++dim)
      EXPECT_EQ(d.image_features.row(k)[dim], static_cast<float>(100.0 * images[k] + dim + 0.5))
          << "row " << k << " dim " << dim;
  // One text per class, the class's att column, seen classes first.
  EXPECT_EQ(d.text_labels, (std::vector<int64_t>{0, 2, 3, 1, 4}));
  ASSERT_EQ(d.text_features.rows, 5);
  ASSERT_EQ(d.text_features.cols, 4);
  for (int64_t k = 0; k < 5; ++k)
    for (int64_t a = 0; a < 4; ++a)
      EXPECT_EQ(d.text_features.row(k)[a],
                static_cast<float>(att_scale * Xlsa17Fixture::att(a, d.text_labels[k])));
}

TEST(ImportXlsa17, ColumnsAreImagesIndicesAreOneBasedSplitsFollowTheLocations) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture().write(o.input);
  const zscrgan::Dataset d = zscrgan::import_dataset(o);
  expect_default_xlsa17(d);
  EXPECT_EQ(d.name, "AWA");  // the output folder's name when none is given
}

TEST(ImportXlsa17, SinglePrecisionAndIntegerIndexVariables) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture f;
  f.single_precision = true;
  f.integer_indices = true;
  f.write(o.input);
  expect_default_xlsa17(zscrgan::import_dataset(o));
}

TEST(ImportXlsa17, CompressedAndV73FilesReadTheSame) {
  for (const auto& [version, compression] :
       {std::pair{MAT_FT_MAT5, MAT_COMPRESSION_ZLIB}, std::pair{MAT_FT_MAT73, MAT_COMPRESSION_NONE}}) {
    ScopedTempDir tmp;
    auto o = xlsa17_options(tmp);
    Xlsa17Fixture f;
    f.version = version;
    f.compression = compression;
    f.write(o.input);
    SCOPED_TRACE(version == MAT_FT_MAT73 ? "v7.3" : "compressed v5");
    expect_default_xlsa17(zscrgan::import_dataset(o));
  }
}

TEST(ImportXlsa17, CopiesWithoutTrainLocAndValLocImportTheSame) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture f;
  f.with_train_val_loc = false;
  f.write(o.input);
  expect_default_xlsa17(zscrgan::import_dataset(o));
}

TEST(ImportXlsa17, OriginalAttIsSelectable) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture().write(o.input);
  o.original_att = true;
  expect_default_xlsa17(zscrgan::import_dataset(o), 100.0);
}

// xlsa17 has one split (its proposed one): a --split given with it is refused, not ignored.
TEST(ImportXlsa17, ASplitIsRefused) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture().write(o.input);
  for (const char* split : {"easy", "hard"}) {
    o.split = split;
    expect_refused(o, {"--split applies to the gazsl format only", "xlsa17"});
  }
}

TEST(ImportXlsa17, ClassEmbeddingFileGivesEachClassItsRow) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture().write(o.input);
  zscrgan::HostMatrix emb;
  emb.rows = 5;
  emb.cols = 7;
  for (int i = 0; i < 35; ++i) emb.data.push_back(0.125f * i);
  o.class_embedding = tmp.file("sentences.npy");
  zscrgan::write_npy_matrix(o.class_embedding, emb);
  const zscrgan::Dataset d = zscrgan::import_dataset(o);
  ASSERT_EQ(d.text_features.cols, 7);
  for (int64_t k = 0; k < d.text_features.rows; ++k)
    EXPECT_EQ(row_of(d.text_features, k), row_of(emb, d.text_labels[k]));

  emb.rows = 4;
  emb.data.resize(28);
  zscrgan::write_npy_matrix(o.class_embedding, emb);
  expect_refused(o, {"sentences.npy", "4 rows", "5 classes"});
}

TEST(ImportXlsa17, RunImportWritesAFolderThatLoadsBack) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  o.name = "awa-mini";
  Xlsa17Fixture().write(o.input);
  std::ostringstream out;
  zscrgan::run_import(o, out);
  const zscrgan::Dataset d = zscrgan::load_dataset_folder(o.output);
  EXPECT_EQ(d.name, "awa-mini");
  expect_default_xlsa17(d);
  EXPECT_NE(out.str().find("classes: 3 train, 2 test"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("images: 10 (train 6, test 4), 3-d"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("odd: nothing"), std::string::npos) << out.str();
}

// Each broken fixture, the words its one-line refusal must contain.
struct BadXlsa17 {
  const char* what;
  std::function<void(Xlsa17Fixture&)> edit;
  std::vector<std::string> needles;
};

TEST(ImportXlsa17, EveryBrokenInputIsRefusedNamingFileAndVariable) {
  const std::vector<BadXlsa17> cases = {
      {"missing test_unseen_loc", [](Xlsa17Fixture& f) { f.omit = "test_unseen_loc"; },
       {"att_splits.mat", "'test_unseen_loc'", "not found"}},
      {"missing trainval_loc", [](Xlsa17Fixture& f) { f.omit = "trainval_loc"; },
       {"att_splits.mat", "'trainval_loc'", "not found"}},
      {"missing att", [](Xlsa17Fixture& f) { f.omit = "att"; }, {"att_splits.mat", "'att'"}},
      {"missing features", [](Xlsa17Fixture& f) { f.omit = "features"; },
       {"res101.mat", "'features'", "not found"}},
      {"missing labels", [](Xlsa17Fixture& f) { f.omit = "labels"; },
       {"res101.mat", "'labels'", "not found"}},
      {"features one row per image", [](Xlsa17Fixture& f) { f.features_one_row_per_image = true; },
       {"res101.mat", "'features'", "12 x 3", "one column per image"}},
      {"more feature columns than labels", [](Xlsa17Fixture& f) { f.extra_feature_columns = 1; },
       {"res101.mat", "'features'", "3 x 13", "'labels' has 12"}},
      {"trainval_loc past the last image", [](Xlsa17Fixture& f) { f.trainval_loc[2] = 13; },
       {"att_splits.mat", "'trainval_loc'", "13", "1..12"}},
      {"a zero image index", [](Xlsa17Fixture& f) { f.test_unseen_loc[0] = 0; },
       {"att_splits.mat", "'test_unseen_loc'", "outside 1..12"}},
      {"a fractional image index", [](Xlsa17Fixture& f) { f.test_unseen_loc[1] = 2.5; },
       {"att_splits.mat", "'test_unseen_loc'", "not an integer"}},
      {"an image listed twice", [](Xlsa17Fixture& f) { f.trainval_loc.push_back(11); },
       {"att_splits.mat", "'trainval_loc'", "twice"}},
      {"a label that matches no class", [](Xlsa17Fixture& f) { f.labels[4] = 6; },
       {"res101.mat", "'labels'", "matches no class", "1..5"}},
      {"a label of zero (0-based labels)", [](Xlsa17Fixture& f) { f.labels[0] = 0; },
       {"res101.mat", "'labels'", "matches no class"}},
      {"an image in both splits", [](Xlsa17Fixture& f) { f.test_unseen_loc.push_back(1); },
       {"att_splits.mat", "'trainval_loc'", "'test_unseen_loc'"}},
      {"a class in both splits", [](Xlsa17Fixture& f) { f.test_unseen_loc.push_back(6); },
       {"att_splits.mat", "class 1", "'trainval_loc'", "'test_unseen_loc'"}},
      {"a non-finite feature",
       [](Xlsa17Fixture& f) {
         f.feature = [](size_t d, size_t i) { return i == 7 && d == 1 ? NAN : 1.0 * i + d; };
       },
       {"res101.mat", "'features'", "non-finite", "column 8"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ScopedTempDir tmp;
    auto o = xlsa17_options(tmp);
    Xlsa17Fixture f;
    c.edit(f);
    f.write(o.input);
    expect_refused(o, c.needles);
  }
}

// A .mat file cut short must never import (matio reads a cut variable as zeros, or leaves it
// unfilled, and says so only in a warning): every cut length, compressed or not, v5 or v4, with
// the features first or last, is refused naming the file.
TEST(ImportXlsa17, TruncatedMatFilesAreRefusedAtEveryLength) {
  struct Case {
    const char* what;
    mat_ft version;
    matio_compression compression;
    bool features_last;
  };
  const Case cases[] = {
      {"v5", MAT_FT_MAT5, MAT_COMPRESSION_NONE, false},
      {"v5, features last", MAT_FT_MAT5, MAT_COMPRESSION_NONE, true},
      {"compressed v5", MAT_FT_MAT5, MAT_COMPRESSION_ZLIB, false},
      {"compressed v5, features last", MAT_FT_MAT5, MAT_COMPRESSION_ZLIB, true},
      {"v4", MAT_FT_MAT4, MAT_COMPRESSION_NONE, true},
  };
  int refused = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ScopedTempDir tmp;
    auto o = xlsa17_options(tmp);
    Xlsa17Fixture f;
    f.version = c.version;
    f.compression = c.compression;
    f.dim = 40;  // enough bytes that a cut can land inside the values
    f.write(o.input);
    const std::string res101 = (fs::path(o.input) / "res101.mat").string();
    if (c.features_last) {  // rewrite with the labels first
      fs::remove(res101);
      MatWriter w(res101, c.version, c.compression);
      w.put_vector("labels", f.labels);
      w.put_fn<double>("features", f.dim, f.labels.size(), f.feature);
    }
    const std::string whole = zscrgan_test::read_bytes(res101);
    const zscrgan::Dataset whole_import = zscrgan::import_dataset(o);  // the uncut file imports
    EXPECT_EQ(whole_import.image_features.cols, 40);
    for (size_t cut : {size_t{1}, size_t{3}, size_t{8}, size_t{100}, whole.size() * 2 / 5,
                       whole.size() * 3 / 4}) {
      if (cut >= whole.size() - 8) continue;
      SCOPED_TRACE("cut " + std::to_string(cut) + " of " + std::to_string(whole.size()) + " bytes");
      zscrgan_test::write_bytes(res101, whole.substr(0, whole.size() - cut));
      expect_refused(o, {res101});
      ++refused;
    }
  }
  EXPECT_GE(refused, 25);
}

// A MAT v4 file's first matrix header is read by matio's Mat_Open itself, which allocates the
// name length it declares: a 200-byte file declaring a 1.8 GB name (found by the fuzzer) is
// refused by the size check, before matio sees it, naming the file.
TEST(ImportXlsa17, MatV4HeaderSizesAreCheckedBeforeMatioOpensTheFile) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture f;
  f.write(o.input);
  const std::string res101 = (fs::path(o.input) / "res101.mat").string();
  // type 0 (double, little-endian), 3 x 12, real, then the name length
  const std::vector<uint32_t> header = {0, 3, 12, 0, 0x70000000u};
  std::string file(reinterpret_cast<const char*>(header.data()), 20);
  file += std::string("features\0", 9) + std::string(3 * 12 * 8, '\0');
  zscrgan_test::write_bytes(res101, file);
  expect_refused(o, {res101, "truncated", "variable 1", "declares 1879048500 bytes"});
}

// ---- MAT v5 files built byte by byte ------------------------------------------------------------

// A data element: its tag (type, byte count) and the bytes, padded to 8.
std::string mat5_element(uint32_t type, const std::string& bytes) {
  std::string out(8, '\0');
  const uint32_t n = static_cast<uint32_t>(bytes.size());
  std::memcpy(&out[0], &type, 4);  // this test runs little-endian, as the header says
  std::memcpy(&out[4], &n, 4);
  out += bytes;
  out.resize((out.size() + 7) / 8 * 8, '\0');
  return out;
}

template <typename T>
std::string mat5_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A miMATRIX element of MATLAB class `cls` (6 double, 1 cell, 2 struct), dims as declared,
// then `body` (the data parts, or the cell or struct contents) as given.
std::string mat5_matrix(uint32_t cls, const std::vector<uint32_t>& dims, const std::string& name,
                        const std::string& body, bool complex = false) {
  const std::vector<uint32_t> flags = {cls | (complex ? 0x800u : 0u), 0};
  return mat5_element(14, mat5_element(6, mat5_bytes(flags)) + mat5_element(5, mat5_bytes(dims)) +
                              mat5_element(1, name) + body);
}

std::string mat5_doubles(const std::vector<double>& v) { return mat5_element(9, mat5_bytes(v)); }

std::string mat5_compressed(const std::string& element) {
  uLongf n = compressBound(element.size());
  std::string out(n, '\0');
  EXPECT_EQ(compress2(reinterpret_cast<Bytef*>(&out[0]), &n,
                      reinterpret_cast<const Bytef*>(element.data()), element.size(), 6), Z_OK);
  out.resize(n);
  std::string tagged(8, '\0');
  const uint32_t type = 15, size = static_cast<uint32_t>(n);
  std::memcpy(&tagged[0], &type, 4);
  std::memcpy(&tagged[4], &size, 4);
  return tagged + out;  // compressed elements are not padded
}

std::string mat5_file(const std::string& elements) {
  std::string head = "MATLAB 5.0 MAT-file, built by test_importers";
  head.resize(116, ' ');
  head += std::string(8, '\0');
  head += std::string("\x00\x01IM", 4);
  return head + elements;
}

// Sizes declared inside a variable (its dimensions, a cell's or struct's entries, a data part)
// are held against the bytes the variable has before matio allocates them: a 1,000-byte file
// that declares a 1,000,000,000 x 12 double matrix (matio calloc()s the 96 GB and "reads" it),
// a cell or struct of 10^9 entries (matio's Mat_GetDir allocates a pointer for each), the same
// compressed, each is refused naming the file and the variable. The same writer's well-formed
// file imports exactly.
TEST(ImportXlsa17, SizesDeclaredInsideAVariableMustFitItsBytes) {
  Xlsa17Fixture f;
  std::vector<double> features;
  for (size_t i = 0; i < f.labels.size(); ++i)
    for (size_t d = 0; d < 3; ++d) features.push_back(f.feature(d, i));
  const uint32_t n = static_cast<uint32_t>(f.labels.size());
  const std::string labels = mat5_matrix(6, {n, 1}, "labels", mat5_doubles(f.labels));
  const std::string good = mat5_matrix(6, {3, n}, "features", mat5_doubles(features));
  struct Case {
    const char* what;
    std::string features;
    std::vector<std::string> needles;
  };
  const std::string huge_numeric = mat5_matrix(6, {1000000000, n}, "features", mat5_doubles(features));
  const std::string field_names = mat5_element(5, std::string("\x08\x00\x00\x00", 4)) +
                                  mat5_element(1, std::string("a\0\0\0\0\0\0\0", 8));
  const Case cases[] = {
      {"numeric dims beyond its values", huge_numeric, {"'features'", "1000000000 x 12", "holds 36"}},
      {"compressed numeric dims beyond its values", mat5_compressed(huge_numeric),
       {"'features'", "1000000000 x 12", "holds 36"}},
      {"imaginary part short", mat5_matrix(6, {3, n}, "features", mat5_doubles(features) + mat5_doubles({1.0}), true),
       {"'features'", "imaginary part holds 1"}},
      {"cell of 10^9 entries", mat5_matrix(1, {1000000000, 1}, "features", ""),
       {"'features'", "1000000000 cell entries"}},
      {"compressed cell of 10^9 entries", mat5_compressed(mat5_matrix(1, {1000000000, 1}, "features", "")),
       {"'features'", "1000000000 cell entries"}},
      {"struct of 10^9 entries", mat5_matrix(2, {1000000000, 1}, "features", field_names),
       {"'features'", "1000000000 struct fields"}},
      {"dims that overflow", mat5_matrix(6, {4294967295u, 4294967295u, 4294967295u}, "features", ""),
       {"'features'", "overflow"}},
      {"name longer than the variable", mat5_matrix(6, {3, n}, "features", "").substr(0, 40) +
                                            std::string("\x01\x00\x00\x00\x00\x00\x00\x10", 8) + "features",
       {"name", "declares 268435456 bytes"}},
  };
  {
    ScopedTempDir tmp;
    auto o = xlsa17_options(tmp);
    f.write(o.input);
    zscrgan_test::write_bytes((fs::path(o.input) / "res101.mat").string(), mat5_file(good + labels));
    expect_default_xlsa17(zscrgan::import_dataset(o));
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ScopedTempDir tmp;
    auto o = xlsa17_options(tmp);
    f.write(o.input);
    const std::string res101 = (fs::path(o.input) / "res101.mat").string();
    zscrgan_test::write_bytes(res101, mat5_file(labels + c.features));
    std::vector<std::string> needles = c.needles;
    needles.push_back(res101);
    expect_refused(o, needles);
  }
}

TEST(ImportXlsa17, FilesThatAreNotMatFilesOrAbsentAreRefused) {
  ScopedTempDir tmp;
  auto o = xlsa17_options(tmp);
  Xlsa17Fixture().write(o.input);
  fs::remove(fs::path(o.input) / "res101.mat");
  expect_refused(o, {"res101.mat", "not found"});
  zscrgan_test::write_bytes((fs::path(o.input) / "res101.mat").string(), "not a MAT file at all");
  expect_refused(o, {"res101.mat", "cannot open as a MAT file"});
  // A variable of the wrong kind: a cell array where numbers belong.
  {
    MatWriter w((fs::path(o.input) / "res101.mat").string());
    w.put_names("features", {"a", "b"});
    w.put_vector("labels", Xlsa17Fixture().labels);
  }
  expect_refused(o, {"res101.mat", "'features'", "cell array"});
  o.original_att = true;
  o.class_embedding = tmp.file("x.npy");
  expect_refused(o, {"--original-att", "--class-embedding"});
}

// ---- GAZSL (CUB2011, NABird) -----------------------------------------------------------------

struct GazslFixture {
  bool nab = false;
  bool hard = false;
  int64_t classes() const { return nab ? 404 : 200; }
  int64_t text_dim() const { return nab ? 13217 : 7551; }
  int64_t feat_dim = 4;
  int64_t images_per_class = 2;
  std::vector<double> train_cid, test_cid;  // 1-based
  std::vector<int64_t> labels_train, labels_test;
  std::string text_var = "PredicateMatrix";
  bool text_transposed = false;
  int64_t text_dim_change = 0;
  std::string omit;
  bool labels_as_pickles_only = false;
  int64_t drop_train_feature_rows = 0;

  GazslFixture(bool nab_, bool hard_) : nab(nab_), hard(hard_) {
    // Unseen: every 4th class (CUB easy; NABird, up to 81 of them) or every 5th (CUB hard).
    const int64_t n_test = nab ? 81 : (hard ? 40 : 50);
    const int64_t step = hard ? 5 : 4;
    for (int64_t c = classes(); c >= 1; --c) {  // descending: the file order must be kept
      if (c % step == 0 && static_cast<int64_t>(test_cid.size()) < n_test)
        test_cid.push_back(static_cast<double>(c));
      else
        train_cid.push_back(static_cast<double>(c));
    }
    for (int64_t i = 0; i < images_per_class * static_cast<int64_t>(train_cid.size()); ++i)
      labels_train.push_back(i % static_cast<int64_t>(train_cid.size()));
    for (int64_t i = 0; i < images_per_class * static_cast<int64_t>(test_cid.size()); ++i)
      labels_test.push_back(i % static_cast<int64_t>(test_cid.size()));
  }

  // A class's TF-IDF row: mostly zeros, distinct per class.
  static double text(int64_t c, int64_t t) {
    return t == c ? c + 1.0 : (t == 7000 ? 0.5 : (t == 3 * c + 1 ? -0.25 * c : 0.0));
  }
  static double train_feature(int64_t r, int64_t d) { return 10.0 * r + d + 0.125; }
  static double test_feature(int64_t r, int64_t d) { return -10.0 * r - d - 0.375; }

  std::string text_file() const {
    return nab ? "NAB_Porter_13217D_TFIDF_new.mat" : "CUB_Porter_7551D_TFIDF_new.mat";
  }
  std::string split_file() const {
    if (nab) return hard ? "train_test_split_NABird_hard.mat" : "train_test_split_NABird_easy.mat";
    return hard ? "train_test_split_hard.mat" : "train_test_split_easy.mat";
  }
  std::string feat_file(bool train) const {
    const std::string base = train ? "pfc_feat_train" : "pfc_feat_test";
    if (hard) return base + "_hard.mat";
    return nab ? base + "_easy.mat" : base + ".mat";
  }
  std::string labels_stem(bool train) const {
    return std::string(train ? "labels_train" : "labels_test") + (hard ? "_hard" : "");
  }

  void write(const fs::path& dir) const {
    fs::create_directories(dir);
    {
      MatWriter w((dir / text_file()).string(), MAT_FT_MAT5, MAT_COMPRESSION_ZLIB);
      const int64_t dim = text_dim() + text_dim_change;
      if (nab) {  // NABird's fixture is stored sparse, which the reader densifies
        std::vector<std::tuple<size_t, size_t, double>> nz;
        for (int64_t c = 0; c < classes(); ++c)
          for (int64_t t : {c, int64_t{7000}, 3 * c + 1})
            if (text(c, t) != 0) nz.emplace_back(c, t, text(c, t));
        std::sort(nz.begin(), nz.end());
        nz.erase(std::unique(nz.begin(), nz.end()), nz.end());
        w.put_sparse(text_var, classes(), dim, nz);
      } else if (text_transposed) {
        w.put_fn<double>(text_var, dim, classes(), [](size_t t, size_t c) { return text(c, t); });
      } else {
        w.put_fn<double>(text_var, classes(), dim, [](size_t c, size_t t) { return text(c, t); });
      }
    }
    {
      MatWriter w((dir / split_file()).string());
      if (omit != "train_cid") w.put_vector("train_cid", train_cid, /*row=*/true);
      if (omit != "test_cid") w.put_vector("test_cid", test_cid, /*row=*/true);
    }
    for (bool train : {true, false}) {
      const auto& labels = train ? labels_train : labels_test;
      MatWriter w((dir / feat_file(train)).string());
      const int64_t n = static_cast<int64_t>(labels.size()) - (train ? drop_train_feature_rows : 0);
      if (omit != "pfc_feat")
        w.put_fn<float>("pfc_feat", n, feat_dim, [&](size_t r, size_t d) {
          return static_cast<float>(train ? train_feature(r, d) : test_feature(r, d));
        });
      if (!labels_as_pickles_only)
        zscrgan::write_npy_labels((dir / (labels_stem(train) + ".npy")).string(), labels);
      else
        zscrgan_test::write_bytes((dir / (labels_stem(train) + ".pkl")).string(), "pickle");
    }
  }
};

zscrgan::ImportOptions gazsl_options(const ScopedTempDir& tmp, bool hard) {
  zscrgan::ImportOptions o;
  o.format = "gazsl";
  o.input = tmp.file("CUB2011");
  o.output = tmp.file("out/CUB_EASY");
  o.split = hard ? "hard" : "easy";
  fs::create_directories(tmp.path() / "out");
  return o;
}

void expect_gazsl(const GazslFixture& f, const zscrgan::Dataset& d) {
  std::vector<int64_t> train, test;
  for (double c : f.train_cid) train.push_back(static_cast<int64_t>(c) - 1);
  for (double c : f.test_cid) test.push_back(static_cast<int64_t>(c) - 1);
  EXPECT_EQ(d.train_classes, train);  // file order, 0-based
  EXPECT_EQ(d.test_classes, test);
  const int64_t n_train = static_cast<int64_t>(f.labels_train.size());
  const int64_t n_test = static_cast<int64_t>(f.labels_test.size());
  ASSERT_EQ(d.image_features.rows, n_train + n_test);
  ASSERT_EQ(d.image_features.cols, f.feat_dim);
  ASSERT_EQ(static_cast<int64_t>(d.image_labels.size()), n_train + n_test);
  for (int64_t r = 0; r < n_train + n_test; ++r) {
    const bool is_train = r < n_train;
    const int64_t i = is_train ? r : r - n_train;
    const int64_t cls = is_train ? train[f.labels_train[i]] : test[f.labels_test[i]];
    ASSERT_EQ(d.image_labels[r], cls) << "row " << r;
    for (int64_t k = 0; k < f.feat_dim; ++k)
      ASSERT_EQ(d.image_features.row(r)[k],
                static_cast<float>(is_train ? GazslFixture::train_feature(i, k)
                                            : GazslFixture::test_feature(i, k)))
          << "row " << r << " dim " << k;
  }
  std::vector<int64_t> text_labels = train;
  text_labels.insert(text_labels.end(), test.begin(), test.end());
  EXPECT_EQ(d.text_labels, text_labels);
  ASSERT_EQ(d.text_features.cols, f.text_dim());
  for (int64_t k = 0; k < d.text_features.rows; k += 7)
    for (int64_t t = 0; t < f.text_dim(); ++t)
      ASSERT_EQ(d.text_features.row(k)[t], static_cast<float>(GazslFixture::text(text_labels[k], t)))
          << "text " << k << " column " << t;
}

TEST(ImportGazsl, CubEasyRowsAreImagesCidsAreOneBasedLabelsArePositions) {
  ScopedTempDir tmp;
  auto o = gazsl_options(tmp, false);
  GazslFixture f(false, false);
  f.write(o.input);
  const zscrgan::Dataset d = zscrgan::import_dataset(o);
  EXPECT_EQ(d.train_classes.size(), 150u);
  EXPECT_EQ(d.test_classes.size(), 50u);
  expect_gazsl(f, d);
}

TEST(ImportGazsl, CubHardReadsTheHardFiles) {
  ScopedTempDir tmp;
  auto o = gazsl_options(tmp, true);
  GazslFixture f(false, true);
  f.write(o.input);
  const zscrgan::Dataset d = zscrgan::import_dataset(o);
  EXPECT_EQ(d.train_classes.size(), 160u);
  EXPECT_EQ(d.test_classes.size(), 40u);
  expect_gazsl(f, d);
  o.split = "sce";  // the paper's name for the hard split
  expect_gazsl(f, zscrgan::import_dataset(o));
  o.split = "easy";  // the easy files are not there
  expect_refused(o, {"train_test_split_easy.mat", "not found"});
}

// Without a split, gazsl reads the easy (SCS) files.
TEST(ImportGazsl, TheEasySplitIsTheDefault) {
  ScopedTempDir tmp;
  auto o = gazsl_options(tmp, false);
  o.split.clear();
  GazslFixture f(false, false);
  f.write(o.input);
  expect_gazsl(f, zscrgan::import_dataset(o));
}

TEST(ImportGazsl, NabirdSparseTextsAndSplitNames) {
  ScopedTempDir tmp;
  auto o = gazsl_options(tmp, false);
  o.input = tmp.file("NABird");
  o.split = "scs";
  GazslFixture f(true, false);
  f.write(o.input);
  const zscrgan::Dataset d = zscrgan::import_dataset(o);
  EXPECT_EQ(d.train_classes.size(), 323u);
  EXPECT_EQ(d.test_classes.size(), 81u);
  expect_gazsl(f, d);
}

struct BadGazsl {
  const char* what;
  std::function<void(GazslFixture&)> edit;
  std::vector<std::string> needles;
};

TEST(ImportGazsl, EveryBrokenInputIsRefusedNamingFileAndVariable) {
  const std::vector<BadGazsl> cases = {
      {"texts under another name", [](GazslFixture& f) { f.text_var = "TextMatrix"; },
       {"CUB_Porter_7551D_TFIDF_new.mat", "'PredicateMatrix'", "not found", "TextMatrix"}},
      {"a vocabulary of the wrong size", [](GazslFixture& f) { f.text_dim_change = -1; },
       {"CUB_Porter_7551D_TFIDF_new.mat", "'PredicateMatrix'", "200 x 7550", "7551"}},
      {"texts one column per class", [](GazslFixture& f) { f.text_transposed = true; },
       {"CUB_Porter_7551D_TFIDF_new.mat", "'PredicateMatrix'", "one row per class"}},
      {"missing test_cid", [](GazslFixture& f) { f.omit = "test_cid"; },
       {"train_test_split_easy.mat", "'test_cid'", "not found"}},
      {"a class number past the last class", [](GazslFixture& f) { f.train_cid[3] = 201; },
       {"train_test_split_easy.mat", "'train_cid'", "201", "1..200"}},
      {"a class number of zero", [](GazslFixture& f) { f.test_cid[0] = 0; },
       {"train_test_split_easy.mat", "'test_cid'", "outside 1..200"}},
      {"the wrong number of unseen classes", [](GazslFixture& f) { f.test_cid.pop_back(); },
       {"train_test_split_easy.mat", "'test_cid'", "49", "50"}},
      {"a class in both splits", [](GazslFixture& f) { f.test_cid[0] = f.train_cid[0]; },
       {"train_test_split_easy.mat", "'train_cid'", "'test_cid'"}},
      {"a label that matches no training class", [](GazslFixture& f) { f.labels_train[5] = 150; },
       {"labels_train.npy", "150", "'train_cid'", "matches no class"}},
      {"a negative test label", [](GazslFixture& f) { f.labels_test[0] = -1; },
       {"labels_test.npy", "'test_cid'", "matches no class"}},
      {"labels only as pickles", [](GazslFixture& f) { f.labels_as_pickles_only = true; },
       {"labels_train", ".pkl", "convert_pickles.py --gazsl-labels"}},
      {"fewer feature rows than labels", [](GazslFixture& f) { f.drop_train_feature_rows = 1; },
       {"pfc_feat_train.mat", "'pfc_feat'", "299 x 4", "300"}},
      {"missing pfc_feat", [](GazslFixture& f) { f.omit = "pfc_feat"; },
       {"pfc_feat_train.mat", "'pfc_feat'", "not found"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ScopedTempDir tmp;
    auto o = gazsl_options(tmp, false);
    GazslFixture f(false, false);
    c.edit(f);
    f.write(o.input);
    expect_refused(o, c.needles);
  }
}

TEST(ImportGazsl, FoldersWithoutOneKnownTextFileAndBadSplitNamesAreRefused) {
  ScopedTempDir tmp;
  auto o = gazsl_options(tmp, false);
  fs::create_directories(o.input);
  expect_refused(o, {"CUB_Porter_7551D_TFIDF_new.mat", "NAB_Porter_13217D_TFIDF_new.mat"});
  GazslFixture(false, false).write(o.input);
  o.split = "medium";
  expect_refused(o, {"split", "medium"});
  o.split = "easy";
  o.class_embedding = tmp.file("x.npy");
  expect_refused(o, {"--class-embedding", "xlsa17"});
}

// The full-size timing: a features matrix as large as AWA2's (2048 x 37,322 doubles, 611 MB),
// stored plain and zlib-compressed (both kinds of MAT5 are published).
// Run with: zscrgan_tests --gtest_also_run_disabled_tests --gtest_filter='*FullSize*'
TEST(ImportXlsa17, DISABLED_FullSizeTiming) {
  const size_t dim = 2048, n = 37322, classes = 50, att_dim = 85;
  std::vector<double> labels(n), trainval, test_unseen;
  for (size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<double>(i % classes + 1);
    (i % classes < 40 ? trainval : test_unseen).push_back(static_cast<double>(i + 1));
  }
  for (const auto compression : {MAT_COMPRESSION_NONE, MAT_COMPRESSION_ZLIB}) {
    ScopedTempDir tmp;
    const fs::path dir = tmp.path() / "AWA2_like";
    fs::create_directories(dir);
    auto t0 = std::chrono::steady_clock::now();
    {
      MatWriter w((dir / "res101.mat").string(), MAT_FT_MAT5, compression);
      std::vector<double> features(dim * n);
      uint64_t x = 88172645463325252ull;  // xorshift: distinct rows, post-ReLU-like values
      for (auto& v : features) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v = (x % 4 == 0) ? 0.0 : static_cast<double>(x >> 40) * 1e-6;
      }
      w.put("features", dim, n, std::move(features));
      w.put_vector("labels", labels);
    }
    {
      MatWriter w((dir / "att_splits.mat").string(), MAT_FT_MAT5, compression);
      w.put_fn<double>("att", att_dim, classes, [](size_t a, size_t c) { return 0.01 * (a + c); });
      w.put_vector("trainval_loc", trainval);
      w.put_vector("test_unseen_loc", test_unseen);
    }
    auto t1 = std::chrono::steady_clock::now();
    zscrgan::ImportOptions o;
    o.format = "xlsa17";
    o.input = dir.string();
    o.output = tmp.file("AWA2");
    const zscrgan::Dataset d = zscrgan::import_dataset(o);
    auto t2 = std::chrono::steady_clock::now();
    zscrgan::validate_dataset(d, o.input);
    zscrgan::write_dataset_folder(d, o.output);
    const std::string summary = zscrgan::import_summary(d);
    auto t3 = std::chrono::steady_clock::now();
    const double import_s = std::chrono::duration<double>(t2 - t1).count();
    std::printf("%s MAT5, res101.mat %.0f MB (written in %.1f s)\n"
                "  import_dataset: %.2f s\n  validate + write_dataset_folder + summary: %.2f s\n%s",
                compression == MAT_COMPRESSION_NONE ? "plain" : "zlib-compressed",
                fs::file_size(dir / "res101.mat") / 1e6,
                std::chrono::duration<double>(t1 - t0).count(), import_s,
                std::chrono::duration<double>(t3 - t2).count(), summary.c_str());
    EXPECT_EQ(d.image_features.rows, static_cast<int64_t>(n));
    EXPECT_LT(import_s, 30.0);
  }
}

#else  // !ZSCRGAN_HAVE_MATIO

TEST(ImportMat, NeedsMatio) {
  GTEST_SKIP() << "this build has no matio (install libmatio-dev and reconfigure): the xlsa17 "
                  "and GAZSL importers are untested";
}

#endif  // ZSCRGAN_HAVE_MATIO

// ---- interchange (Wiki and converted folders) --------------------------------------------------

// Wiki-like: every pair is one image and one text of one of 3 categories.
zscrgan::Dataset pairs_dataset() {
  zscrgan::Dataset d;
  d.name = "wiki-mini";
  d.train_classes = {1, 2};
  d.test_classes = {3};
  const std::vector<int64_t> cls = {1, 2, 3, 1, 2, 3, 3};
  d.image_features.cols = 3;
  d.text_features.cols = 2;
  for (size_t i = 0; i < cls.size(); ++i) {
    d.image_labels.push_back(cls[i]);
    d.text_labels.push_back(cls[i]);
    for (int k = 0; k < 3; ++k) d.image_features.data.push_back(static_cast<float>(10 * i + k));
    for (int k = 0; k < 2; ++k) d.text_features.data.push_back(static_cast<float>(-10.0 * i - k));
  }
  d.image_features.rows = d.text_features.rows = static_cast<int64_t>(cls.size());
  return d;
}

TEST(ImportInterchange, CopiesAFolderUnderANewName) {
  ScopedTempDir tmp;
  zscrgan::write_dataset_folder(pairs_dataset(), tmp.file("in"));
  zscrgan::ImportOptions o;
  o.format = "interchange";
  o.input = tmp.file("in");
  o.output = tmp.file("WIKI");
  o.name = "WIKI";
  std::ostringstream out;
  zscrgan::run_import(o, out);
  const zscrgan::Dataset d = zscrgan::load_dataset_folder(o.output);
  const zscrgan::Dataset want = pairs_dataset();
  EXPECT_EQ(d.name, "WIKI");
  EXPECT_EQ(d.image_features.data, want.image_features.data);
  EXPECT_EQ(d.text_features.data, want.text_features.data);
  EXPECT_EQ(d.image_labels, want.image_labels);
  EXPECT_EQ(d.text_labels, want.text_labels);
  EXPECT_NE(out.str().find("texts per class: train 2, test 3"), std::string::npos) << out.str();
}

TEST(ImportInterchange, BrokenFoldersAndMisplacedOptionsAreRefused) {
  ScopedTempDir tmp;
  zscrgan::write_dataset_folder(pairs_dataset(), tmp.file("in"));
  fs::create_directories(tmp.path() / "out");
  zscrgan::ImportOptions o;
  o.format = "interchange";
  o.input = tmp.file("in");
  o.output = tmp.file("out/WIKI");
  o.original_att = true;
  expect_refused(o, {"--original-att", "xlsa17"});
  o.original_att = false;
  fs::remove(tmp.path() / "in" / "text_labels.npy");
  expect_refused(o, {"text_labels.npy", "not found"});
  o.format = "csv";
  expect_refused(o, {"unknown format 'csv'"});
  o.format = "interchange";
  o.input = tmp.file("nowhere");
  expect_refused(o, {"nowhere", "not found"});
}

// ---- the summary ------------------------------------------------------------------------------

TEST(ImportSummary, NamesWhatIsOdd) {
  zscrgan::Dataset d = pairs_dataset();
  const std::string clean = zscrgan::import_summary(d);
  EXPECT_NE(clean.find("odd: nothing"), std::string::npos) << clean;
  EXPECT_NE(clean.find("images: 7 (train 4, test 3), 3-d, values in [0, 62], mean 31"),
            std::string::npos)
      << clean;

  d.test_classes = {3, 2, 9};              // 2 in both splits; 9 has no images or texts
  d.image_labels[0] = 5;                   // in neither split
  d.image_features.row(4)[0] = 30;         // row 4 now equals row 3 ... after the next two
  d.image_features.row(4)[1] = 31;
  d.image_features.row(4)[2] = 32;
  d.text_features.row(6)[1] = NAN;
  const std::string s = zscrgan::import_summary(d);
  for (const char* needle :
       {"classes in both splits: 2", "1 image labels in neither split (classes 5)",
        "classes with no images: 9", "classes with no texts: 9", "1 non-finite text feature values",
        "1 image rows repeat an earlier row (first: row 4 = row 3)"})
    EXPECT_NE(s.find(needle), std::string::npos) << "'" << needle << "' in:\n" << s;
}

// ---- the authors' pickles (tools/convert_pickles.py) ------------------------------------------

const char* kPython = "/usr/bin/python3";

// Runs a shell command; returns its exit status, with stdout and stderr captured.
int run(const std::string& cmd, const ScopedTempDir& tmp, std::string* out, std::string* err) {
  const std::string o = tmp.file("cmd.out"), e = tmp.file("cmd.err");
  const int status = std::system((cmd + " >" + o + " 2>" + e).c_str());
  if (out) *out = zscrgan_test::read_bytes(o);
  if (err) *err = zscrgan_test::read_bytes(e);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

bool python_with_numpy(const ScopedTempDir& tmp) {
  return run(std::string(kPython) + " -c 'import numpy'", tmp, nullptr, nullptr) == 0;
}

// Writes Python 2 style pickles (raw bytes as py2 str, which Python 3 can only read back with
// encoding="latin1") for one of several cases.
const char* kPickleWriter = R"PY(
import os, pickle, struct, sys
import numpy as np

class Py2Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)
    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_py2_str

def dump(obj, path):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)

case, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
if case == "gazsl_labels":
    dump(np.array([2, 0, 1, 1, 0, 2], dtype=np.int64), os.path.join(out, "labels_train.pkl"))
    dump([1, 0, 1], os.path.join(out, "labels_test.pkl"))
    sys.exit(0)

texts_per = {7: 3, 3: 1, 12: 2, 5: 2, 9: 1, 20: 1}
images_per = {7: 2, 3: 3, 12: 2, 5: 4, 9: 2, 20: 1}
text = lambda c, j: np.array([100.0 * c + 10 * j + k + 0.5 for k in range(4)])
image = lambda c, j: np.array([1000.0 * c + 10 * j + k + 0.25 for k in range(6)], dtype=np.float32)
txt = {c: [text(c, j) for j in range(n)] for c, n in texts_per.items()}
img = {c: [image(c, j) for j in range(n)] for c, n in images_per.items()}
txt[12] = np.stack(txt[12])          # a class's vectors as one 2-D array
txt[np.int64(9)] = txt.pop(9)        # a numpy integer key
train, test = [7, 3, 12], np.array([5, 9])

if case == "shape":
    txt[3] = [text(3, 0).reshape(1, 4)]
elif case == "ragged":
    img[5] = [np.zeros(5, dtype=np.float32)] * 4
elif case == "unknown":
    test = [5, 9, 42]
elif case == "both":
    test = [5, 9, 7]
elif case == "nonfinite":
    img[3][1][2] = np.nan

dump(txt, os.path.join(out, "txt_embed_dict.pkl"))
dump(img, os.path.join(out, "image_embed_dict.pkl"))
dump(train, os.path.join(out, "trainids.pkl"))
if case != "missing":
    dump(test, os.path.join(out, "testids.pkl"))
if case == "notpickle":
    open(os.path.join(out, "image_embed_dict.pkl"), "wb").write(b"\x80\x02garbage")
if case == "good":  # the fixture really needs latin1, as the authors' files do
    try:
        pickle.load(open(os.path.join(out, "image_embed_dict.pkl"), "rb"))
        sys.exit("fixture loads without latin1: not Python 2 style")
    except UnicodeDecodeError:
        pass
)PY";

std::string convert_tool() { return std::string(ZSCRGAN_SOURCE_DIR) + "/tools/convert_pickles.py"; }

void write_pickles(const ScopedTempDir& tmp, const std::string& case_name, const std::string& dir) {
  const std::string script = tmp.file("write_pickles.py");
  {
    std::ofstream f(script);
    f << kPickleWriter;
  }
  std::string err;
  ASSERT_EQ(run(std::string(kPython) + " " + script + " " + case_name + " " + dir, tmp, nullptr, &err),
            0)
      << err;
}

// stderr lines that are not warnings.
std::vector<std::string> error_lines(const std::string& err) {
  std::vector<std::string> out;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("convert_pickles: warning:", 0) != 0) out.push_back(line);
  return out;
}

TEST(ConvertPickles, KeepsSplitOrderAndEachClassesTextOrder) {
  ScopedTempDir tmp;
  if (!python_with_numpy(tmp)) GTEST_SKIP() << "needs " << kPython << " with numpy (python3-numpy)";
  write_pickles(tmp, "good", tmp.file("CUB_pickles"));
  std::string out, err;
  ASSERT_EQ(run(std::string(kPython) + " " + convert_tool() + " " + tmp.file("CUB_pickles") + " " +
                    tmp.file("datasets/CUB"),
                tmp, &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("unpickling can run code"), std::string::npos) << err;
  EXPECT_NE(out.find("1 classes of the dicts are in neither"), std::string::npos) << out;

  const zscrgan::Dataset d = zscrgan::load_dataset_folder(tmp.file("datasets/CUB"));
  EXPECT_EQ(d.name, "CUB");
  EXPECT_EQ(d.train_classes, (std::vector<int64_t>{7, 3, 12}));
  EXPECT_EQ(d.test_classes, (std::vector<int64_t>{5, 9}));
  const std::vector<std::pair<int64_t, int>> texts = {{7, 3}, {3, 1}, {12, 2}, {5, 2}, {9, 1}};
  const std::vector<std::pair<int64_t, int>> images = {{7, 2}, {3, 3}, {12, 2}, {5, 4}, {9, 2}};
  int64_t r = 0;
  for (const auto& [c, n] : texts) {
    for (int j = 0; j < n; ++j, ++r) {
      ASSERT_EQ(d.text_labels[r], c);
      for (int k = 0; k < 4; ++k)
        EXPECT_EQ(d.text_features.row(r)[k], static_cast<float>(100.0 * c + 10 * j + k + 0.5));
    }
  }
  EXPECT_EQ(r, d.text_features.rows);
  r = 0;
  for (const auto& [c, n] : images) {
    for (int j = 0; j < n; ++j, ++r) {
      ASSERT_EQ(d.image_labels[r], c);
      for (int k = 0; k < 6; ++k)
        EXPECT_EQ(d.image_features.row(r)[k], static_cast<float>(1000.0 * c + 10 * j + k + 0.25));
    }
  }
  EXPECT_EQ(r, d.image_features.rows);

  // Converting again replaces the dataset folder it wrote.
  ASSERT_EQ(run(std::string(kPython) + " " + convert_tool() + " " + tmp.file("CUB_pickles") + " " +
                    tmp.file("datasets/CUB") + " --name cub-again",
                tmp, &out, &err),
            0)
      << err;
  EXPECT_EQ(zscrgan::load_dataset_folder(tmp.file("datasets/CUB")).name, "cub-again");
  EXPECT_EQ(entries(tmp.path() / "datasets"), std::vector<std::string>{"CUB"});
}

TEST(ConvertPickles, EveryBrokenFolderIsOneLineAndNoOutput) {
  ScopedTempDir tmp;
  if (!python_with_numpy(tmp)) GTEST_SKIP() << "needs " << kPython << " with numpy (python3-numpy)";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"missing", {"testids.pkl", "not found"}},
      {"shape", {"txt_embed_dict.pkl", "class 3", "shape (1, 4)"}},
      {"ragged", {"image_embed_dict.pkl", "class 5", "5-d", "6-d"}},
      {"unknown", {"testids.pkl", "class 42", "image_embed_dict.pkl"}},
      {"both", {"testids.pkl", "class 7", "trainids.pkl"}},
      {"nonfinite", {"image_embed_dict.pkl", "class 3", "finite"}},
      {"notpickle", {"image_embed_dict.pkl", "cannot unpickle"}},
  };
  for (const auto& [name, needles] : cases) {
    SCOPED_TRACE(name);
    const std::string in = tmp.file("in_" + name);
    write_pickles(tmp, name, in);
    fs::create_directories(tmp.path() / ("out_" + name));
    const std::string target = tmp.file("out_" + name + "/DS");
    std::string err;
    EXPECT_NE(run(std::string(kPython) + " " + convert_tool() + " " + in + " " + target, tmp,
                  nullptr, &err),
              0);
    const auto lines = error_lines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    for (const auto& n : needles)
      EXPECT_NE(lines[0].find(n), std::string::npos) << "'" << n << "' in: " << lines[0];
    EXPECT_TRUE(entries(tmp.path() / ("out_" + name)).empty()) << "left behind after: " << err;
  }
}

TEST(ConvertPickles, GazslLabelPicklesBecomeTheNpyTheImporterReads) {
  ScopedTempDir tmp;
  if (!python_with_numpy(tmp)) GTEST_SKIP() << "needs " << kPython << " with numpy (python3-numpy)";
  write_pickles(tmp, "gazsl_labels", tmp.file("labels"));
  std::string err;
  ASSERT_EQ(run(std::string(kPython) + " " + convert_tool() + " --gazsl-labels " + tmp.file("labels"),
                tmp, nullptr, &err),
            0)
      << err;
  EXPECT_EQ(zscrgan::read_npy_labels(tmp.file("labels/labels_train.npy")),
            (std::vector<int64_t>{2, 0, 1, 1, 0, 2}));
  EXPECT_EQ(zscrgan::read_npy_labels(tmp.file("labels/labels_test.npy")),
            (std::vector<int64_t>{1, 0, 1}));
  EXPECT_FALSE(fs::exists(tmp.file("labels/labels_train_hard.npy")));
  // A folder with no label pickles is one line and writes nothing.
  fs::create_directories(tmp.path() / "empty");
  EXPECT_NE(run(std::string(kPython) + " " + convert_tool() + " --gazsl-labels " + tmp.file("empty"),
                tmp, nullptr, &err),
            0);
  EXPECT_EQ(error_lines(err).size(), 1u) << err;
  EXPECT_TRUE(entries(tmp.path() / "empty").empty());
}

}  // namespace
