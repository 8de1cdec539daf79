// GAZSL's bird datasets (CUB2011 and NABird, as its data loader reads them), through matio:
//   <X>_Porter_<D>D_TFIDF_new.mat   'PredicateMatrix': one TF-IDF row per class (C x D)
//   <split file>.mat                'train_cid', 'test_cid': 1-based rows of PredicateMatrix
//   pfc_feat_{train,test}*.mat      'pfc_feat': one row per image (N x D_img)
//   labels_{train,test}*.npy        0-based positions in train_cid / test_cid, one per image
// The labels are published as Python pickles; tools/convert_pickles.py --gazsl-labels turns
// them into the .npy files read here (the C++ side never unpickles).
#include <filesystem>
#include <unordered_set>

#include "import_formats.h"
#include "import_mat.h"
#include "core/error.h"
#include "formats/npy.h"

namespace zscrgan {
namespace detail {

namespace fs = std::filesystem;

namespace {

struct GazslLayout {
  const char* dataset;
  const char* text_file;
  int64_t text_dim;
  // [0] easy (super-category shared, SCS), [1] hard (super-category exclusive, SCE)
  const char* split_file[2];
  const char* feat_train[2];
  const char* feat_test[2];
  int64_t train_classes[2];
  int64_t test_classes[2];
};

// File names and class counts as GAZSL's own loader (dataset.py) has them.
const GazslLayout kLayouts[] = {
    {"CUB2011", "CUB_Porter_7551D_TFIDF_new.mat", 7551,
     {"train_test_split_easy.mat", "train_test_split_hard.mat"},
     {"pfc_feat_train.mat", "pfc_feat_train_hard.mat"},
     {"pfc_feat_test.mat", "pfc_feat_test_hard.mat"},
     {150, 160},
     {50, 40}},
    {"NABird", "NAB_Porter_13217D_TFIDF_new.mat", 13217,
     {"train_test_split_NABird_easy.mat", "train_test_split_NABird_hard.mat"},
     {"pfc_feat_train_easy.mat", "pfc_feat_train_hard.mat"},
     {"pfc_feat_test_easy.mat", "pfc_feat_test_hard.mat"},
     {323, 323},
     {81, 81}},
};
const char* kLabelsTrain[2] = {"labels_train", "labels_train_hard"};
const char* kLabelsTest[2] = {"labels_test", "labels_test_hard"};

std::string in_dir(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / file).string();
}

int split_index(const std::string& split) {
  if (split.empty() || split == "easy" || split == "scs" || split == "SCS") return 0;
  if (split == "hard" || split == "sce" || split == "SCE") return 1;
  fail("gazsl: split must be easy (SCS) or hard (SCE), got '", split, "'");
}

const GazslLayout& detect_layout(const std::string& dir) {
  const GazslLayout* found = nullptr;
  std::error_code ec;
  for (const auto& layout : kLayouts) {
    if (fs::exists(in_dir(dir, layout.text_file), ec)) {
      if (found)
        fail(dir, ": holds both ", found->text_file, " and ", layout.text_file,
             "; import CUB2011 and NABird from separate folders");
      found = &layout;
    }
  }
  if (!found)
    fail(dir, ": no GAZSL class-text file: expected ", kLayouts[0].text_file, " (CUB2011) or ",
         kLayouts[1].text_file, " (NABird)");
  return *found;
}

// 1-based class numbers -> 0-based rows of PredicateMatrix, checked.
std::vector<int64_t> read_class_ids(const MatFile& file, const char* name, int64_t expected,
                                    int64_t n_classes, const GazslLayout& layout,
                                    const char* split_name, const std::string& text_path) {
  const std::vector<int64_t> cid = file.read(name).integer_vector();
  if (static_cast<int64_t>(cid.size()) != expected)
    fail(file.path(), ": variable '", name, "' lists ", cid.size(), " classes; the ",
         layout.dataset, " ", split_name, " split has ", expected);
  std::vector<int64_t> out(cid.size());
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < cid.size(); ++i) {
    if (cid[i] < 1 || cid[i] > n_classes)
      fail(file.path(), ": variable '", name, "' entry ", i + 1, " is ", cid[i], ", outside 1..",
           n_classes, " (1-based rows of 'PredicateMatrix' in ", text_path, ")");
    if (!seen.insert(cid[i]).second)
      fail(file.path(), ": variable '", name, "' lists class ", cid[i], " twice");
    out[i] = cid[i] - 1;
  }
  return out;
}

std::vector<int64_t> read_labels(const std::string& dir, const char* stem) {
  const std::string npy = in_dir(dir, std::string(stem) + ".npy");
  const std::string pkl = in_dir(dir, std::string(stem) + ".pkl");
  std::error_code ec;
  if (!fs::exists(npy, ec)) {
    if (fs::exists(pkl, ec))
      fail_file(npy, ": not found; the labels are in ", pkl,
           ", a pickle, which this program does not read: convert it first with "
           "'/usr/bin/python3 tools/convert_pickles.py --gazsl-labels ", dir, "'");
    fail_file(npy, ": not found (GAZSL publishes it as ", stem,
         ".pkl; convert that with tools/convert_pickles.py --gazsl-labels)");
  }
  return read_npy_labels(npy);
}

// Image features: one row per image, as many rows as labels.
HostMatrix read_features(const std::string& path, size_t n_labels, const std::string& labels) {
  const MatFile file(path);
  const MatMatrix feat = file.read("pfc_feat");
  if (feat.rows() != static_cast<int64_t>(n_labels)) {
    if (feat.cols() == static_cast<int64_t>(n_labels))
      fail(path, ": variable 'pfc_feat' is ", feat.shape(), ", one column per image; expected ",
           n_labels, " x D (one row per image, as GAZSL stores it)");
    fail(path, ": variable 'pfc_feat' is ", feat.shape(), " but ", labels, " has ", n_labels,
         " labels; expected one row per image");
  }
  if (feat.cols() == 0) fail(path, ": variable 'pfc_feat' is ", feat.shape());
  return feat.all_rows();
}

}  // namespace

Dataset import_gazsl(const ImportOptions& o) {
  const int s = split_index(o.split);
  const char* split_name = s == 0 ? "easy (SCS)" : "hard (SCE)";
  const GazslLayout& layout = detect_layout(o.input);

  const std::string text_path = in_dir(o.input, layout.text_file);
  const MatFile text_file(text_path);
  const MatMatrix predicate = text_file.read("PredicateMatrix");
  if (predicate.cols() != layout.text_dim) {
    if (predicate.rows() == layout.text_dim)
      fail(text_path, ": variable 'PredicateMatrix' is ", predicate.shape(),
           ", one column per class; expected C x ", layout.text_dim, " (one row per class)");
    fail(text_path, ": variable 'PredicateMatrix' is ", predicate.shape(), "; expected C x ",
         layout.text_dim, " (one ", layout.text_dim, "-d TF-IDF row per ", layout.dataset,
         " class)");
  }
  const int64_t n_classes = predicate.rows();

  const std::string split_path = in_dir(o.input, layout.split_file[s]);
  const MatFile split_file(split_path);
  const std::vector<int64_t> train_cid =
      read_class_ids(split_file, "train_cid", layout.train_classes[s], n_classes, layout,
                     split_name, text_path);
  const std::vector<int64_t> test_cid =
      read_class_ids(split_file, "test_cid", layout.test_classes[s], n_classes, layout,
                     split_name, text_path);
  {
    const std::unordered_set<int64_t> train(train_cid.begin(), train_cid.end());
    for (int64_t c : test_cid)
      if (train.count(c))
        fail(split_path, ": class ", c + 1, " is in both 'train_cid' and 'test_cid'");
  }

  const std::string labels_train_path = in_dir(o.input, std::string(kLabelsTrain[s]) + ".npy");
  const std::string labels_test_path = in_dir(o.input, std::string(kLabelsTest[s]) + ".npy");
  const std::vector<int64_t> labels_train = read_labels(o.input, kLabelsTrain[s]);
  const std::vector<int64_t> labels_test = read_labels(o.input, kLabelsTest[s]);
  auto map_labels = [&](const std::vector<int64_t>& labels, const std::vector<int64_t>& cid,
                        const std::string& path, const char* var, std::vector<int64_t>& out) {
    for (size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] < 0 || labels[i] >= static_cast<int64_t>(cid.size()))
        fail(path, ": label ", labels[i], " at row ", i, " matches no class of '", var, "' in ",
             split_path, " (labels are 0-based positions in '", var, "', 0..", cid.size() - 1,
             ")");
      out.push_back(cid[labels[i]]);
    }
  };

  Dataset d;
  d.name = o.name;
  map_labels(labels_train, train_cid, labels_train_path, "train_cid", d.image_labels);
  map_labels(labels_test, test_cid, labels_test_path, "test_cid", d.image_labels);

  const std::string feat_train_path = in_dir(o.input, layout.feat_train[s]);
  const std::string feat_test_path = in_dir(o.input, layout.feat_test[s]);
  HostMatrix train_feat = read_features(feat_train_path, labels_train.size(), labels_train_path);
  const HostMatrix test_feat = read_features(feat_test_path, labels_test.size(), labels_test_path);
  if (train_feat.cols != test_feat.cols)
    fail(feat_test_path, ": variable 'pfc_feat' has ", test_feat.cols, " columns but ",
         feat_train_path, " has ", train_feat.cols, "; train and test features must match");
  d.image_features = std::move(train_feat);
  d.image_features.data.insert(d.image_features.data.end(), test_feat.data.begin(),
                               test_feat.data.end());
  d.image_features.rows += test_feat.rows;

  d.train_classes = train_cid;  // GAZSL's own order: label i of the training set is train_cid[i]
  d.test_classes = test_cid;
  std::vector<int64_t> text_rows = train_cid;
  text_rows.insert(text_rows.end(), test_cid.begin(), test_cid.end());
  d.text_features = predicate.rows_as_rows(text_rows);
  d.text_labels = text_rows;
  return d;
}

}  // namespace detail
}  // namespace zscrgan
