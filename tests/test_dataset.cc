// The dataset folder format: round trip, validation and every rejected folder naming what is
// wrong, and the all-or-nothing writer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "data/dataset.h"
#include "data/dataset_source.h"

namespace {

namespace fs = std::filesystem;
using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

// Classes 10, 11 (train) and 20 (test); 2 images and 2 texts each, ids deliberately sparse.
zscrgan::Dataset tiny_dataset() {
  zscrgan::Dataset d;
  d.name = "tiny";
  d.train_classes = {11, 10};
  d.test_classes = {20};
  d.image_features.rows = 6;
  d.image_features.cols = 3;
  d.image_labels = {10, 10, 11, 11, 20, 20};
  for (int i = 0; i < 18; ++i) d.image_features.data.push_back(0.5f * i);
  d.text_features.rows = 6;
  d.text_features.cols = 2;
  d.text_labels = {11, 10, 20, 10, 11, 20};
  for (int i = 0; i < 12; ++i) d.text_features.data.push_back(-0.25f * i);
  return d;
}

void expect_same(const zscrgan::Dataset& a, const zscrgan::Dataset& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.image_features.rows, b.image_features.rows);
  EXPECT_EQ(a.image_features.cols, b.image_features.cols);
  EXPECT_EQ(a.image_features.data, b.image_features.data);
  EXPECT_EQ(a.image_labels, b.image_labels);
  EXPECT_EQ(a.text_features.rows, b.text_features.rows);
  EXPECT_EQ(a.text_features.cols, b.text_features.cols);
  EXPECT_EQ(a.text_features.data, b.text_features.data);
  EXPECT_EQ(a.text_labels, b.text_labels);
  EXPECT_EQ(a.train_classes, b.train_classes);
  EXPECT_EQ(a.test_classes, b.test_classes);
}

// Everything in `parent` (to see stray temporary folders).
std::vector<std::string> entries(const fs::path& parent) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(parent)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Dataset, WriteLoadRoundTrip) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("tiny");
  const auto d = tiny_dataset();
  zscrgan::write_dataset_folder(d, dir);
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"dataset.json", "image_features.npy",
                                                    "image_labels.npy", "text_features.npy",
                                                    "text_labels.npy"}));
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"tiny"});
  expect_same(zscrgan::load_dataset_folder(dir), d);
}

TEST(Dataset, WriteReplacesAnExistingDatasetFolder) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds");
  auto d = tiny_dataset();
  zscrgan::write_dataset_folder(d, dir);
  d.name = "second";
  d.image_features.data[0] = 42.0f;
  zscrgan::write_dataset_folder(d, dir);
  expect_same(zscrgan::load_dataset_folder(dir), d);
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"ds"});
  // A trailing separator names the same folder.
  zscrgan::write_dataset_folder(tiny_dataset(), dir + "/");
  expect_same(zscrgan::load_dataset_folder(dir + "/"), tiny_dataset());
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"ds"});
}

TEST(Dataset, WriteRefusesToReplaceOtherFolders) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("mine");
  fs::create_directories(dir);
  zscrgan_test::write_bytes(tmp.file("mine/notes.txt"), "keep me");
  const std::string msg = error_of([&] { zscrgan::write_dataset_folder(tiny_dataset(), dir); });
  EXPECT_EQ(msg.rfind(dir + ": exists and holds 'notes.txt'", 0), 0u) << msg;
  EXPECT_EQ(zscrgan_test::read_bytes(tmp.file("mine/notes.txt")), "keep me");
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"mine"});

  zscrgan_test::write_bytes(tmp.file("plain"), "a file");
  EXPECT_EQ(error_of([&] { zscrgan::write_dataset_folder(tiny_dataset(), tmp.file("plain")); })
                .rfind(tmp.file("plain") + ": exists and is not a folder", 0),
            0u);
}

// Runs `f` with writes past `bytes` failing (EFBIG): a real failure in the middle of a file.
std::string error_with_file_size_limit(size_t bytes, const std::function<void()>& f) {
  rlimit old_limit{};
  ::getrlimit(RLIMIT_FSIZE, &old_limit);
  struct sigaction ignore {}, old_action {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGXFSZ, &ignore, &old_action);
  rlimit small = old_limit;
  small.rlim_cur = bytes;
  ::setrlimit(RLIMIT_FSIZE, &small);
  const std::string msg = error_of(f);
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  return msg;
}

TEST(Dataset, FailedWriteLeavesNothingBehind) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds");
  // Every array file is larger than the limit: the writer fails inside its temporary folder.
  const auto big = tiny_dataset();
  const std::string msg =
      error_with_file_size_limit(100, [&] { zscrgan::write_dataset_folder(big, dir); });
  EXPECT_EQ(msg.rfind(dir, 0), 0u) << msg;
  EXPECT_TRUE(fs::is_empty(tmp.path())) << "left: " << entries(tmp.path()).size() << " entries";

  // The parent folders the writer created for the dataset go too.
  const std::string nested = tmp.file("new/parent/ds");
  error_with_file_size_limit(100, [&] { zscrgan::write_dataset_folder(big, nested); });
  EXPECT_TRUE(fs::is_empty(tmp.path())) << "left: " << entries(tmp.path()).size() << " entries";

  // Same failure over an existing dataset: the old one survives untouched.
  const auto good = tiny_dataset();
  zscrgan::write_dataset_folder(good, dir);
  error_with_file_size_limit(100, [&] { zscrgan::write_dataset_folder(big, dir); });
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"ds"});
  expect_same(zscrgan::load_dataset_folder(dir), good);

  // Invalid data is rejected before anything is created.
  auto invalid = tiny_dataset();
  invalid.image_labels.pop_back();
  error_of([&] { zscrgan::write_dataset_folder(invalid, tmp.file("other")); });
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"ds"});
}

// A name (like a folder name) need not be UTF-8: dataset.json keeps its bytes, escaped as
// {"bytes_hex": ...}, and reading gives back exactly those bytes.
TEST(Dataset, NameThatIsNotUtf8RoundTripsByteForByte) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds\xff\xfe");
  auto d = tiny_dataset();
  d.name = "bad\xff\xfe\x80name";
  zscrgan::write_dataset_folder(d, dir);
  EXPECT_EQ(zscrgan::load_dataset_folder(dir).name, d.name);
  const std::string meta = zscrgan_test::read_bytes(dir + "/dataset.json");
  EXPECT_NE(meta.find("\"bytes_hex\": \"626164fffe806e616d65\""), std::string::npos) << meta;
}

// A config's dataset folder that is missing: the line says where it was looked for and how
// the paper's datasets are made into one.
TEST(Dataset, AMissingConfiguredFolderSaysWhereItWasLookedForAndHowToMakeIt) {
  ScopedTempDir tmp;
  zscrgan::Config cfg;
  cfg.dataset = "CUB";
  cfg.datasets_root = tmp.file("datasets");
  std::string msg = error_of([&] { zscrgan::load_configured_dataset(cfg); });
  EXPECT_EQ(msg.rfind(tmp.file("datasets/CUB") + ": dataset folder not found (dataset 'CUB' under datasets_root", 0), 0u) << msg;
  EXPECT_NE(msg.find("configs/DATASETS.md"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("relative to"), std::string::npos) << msg;
  cfg.datasets_root = "no-such-root";
  msg = error_of([&] { zscrgan::load_configured_dataset(cfg); });
  EXPECT_NE(msg.find("relative to '" + std::filesystem::current_path().string() + "'"), std::string::npos) << msg;
  cfg.dataset = tmp.file("elsewhere/CUB");
  msg = error_of([&] { zscrgan::load_configured_dataset(cfg); });
  EXPECT_NE(msg.find("(the config's dataset path)"), std::string::npos) << msg;
}

TEST(Dataset, MissingFolder) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("nope");
  EXPECT_EQ(error_of([&] { zscrgan::load_dataset_folder(dir); }),
            dir + ": dataset folder not found");
  zscrgan_test::write_bytes(dir, "a file");
  EXPECT_EQ(error_of([&] { zscrgan::load_dataset_folder(dir); }),
            dir + ": not a folder (expected a dataset folder)");
}

TEST(Dataset, MissingFiles) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds");
  zscrgan::write_dataset_folder(tiny_dataset(), dir);
  for (const char* name : {"text_labels.npy", "image_features.npy", "dataset.json"}) {
    fs::remove(fs::path(dir) / name);
    const std::string path = (fs::path(dir) / name).string();
    const std::string msg = error_of([&] { zscrgan::load_dataset_folder(dir); });
    EXPECT_EQ(msg.rfind(path + ": not found", 0), 0u) << msg;
  }
}

TEST(Dataset, DatasetJsonIsStrict) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds");
  zscrgan::write_dataset_folder(tiny_dataset(), dir);
  const std::string meta = tmp.file("ds/dataset.json");
  struct Case {
    std::string text, expected_start;
  };
  const std::vector<Case> cases = {
      {R"({"name": "x", "train_classes": [10, 11], "test_classes": [20], "split": 1})",
       meta + ": unknown key 'split'"},
      {R"({"name": "x", "train_class": [10, 11], "test_classes": [20]})",
       meta + ": unknown key 'train_class' (did you mean 'train_classes'?)"},
      {R"({"name": "x", "test_classes": [20]})", meta + ": missing key 'train_classes'"},
      {R"({"name": "x", "train_classes": [10, 1.5], "test_classes": [20]})",
       meta + ": key 'train_classes[1]' must be an integer class id"},
      {R"({"name": 3, "train_classes": [10, 11], "test_classes": [20]})",
       meta + ": key 'name' must be a string"},
      {R"({"name": "x", "train_classes": [10, 11], "test_classes": 20})",
       meta + ": key 'test_classes' must be an array"},
      {R"({"name": "x",
  "train_classes": [10, 11] "test_classes": [20]})",
       meta + ":2:42: malformed JSON: syntax error while parsing object"},
      {R"([1, 2])", meta + ": expected a JSON object"},
  };
  for (const auto& c : cases) {
    zscrgan_test::write_bytes(meta, c.text);
    const std::string msg = error_of([&] { zscrgan::load_dataset_folder(dir); });
    EXPECT_EQ(msg.rfind(c.expected_start, 0), 0u) << c.text << "\n -> " << msg;
  }
  // The name is optional: it defaults to the folder's name.
  zscrgan_test::write_bytes(meta, R"({"train_classes": [10, 11], "test_classes": [20]})");
  EXPECT_EQ(zscrgan::load_dataset_folder(dir).name, "ds");
}

// Writes `d` without validation (the writer validates first), then loads it.
std::string load_error(const zscrgan::Dataset& d) {
  ScopedTempDir tmp;
  const std::string dir = tmp.file("ds");
  zscrgan::write_dataset_folder(tiny_dataset(), dir);
  zscrgan::write_npy_matrix(dir + "/image_features.npy", d.image_features);
  zscrgan::write_npy_labels(dir + "/image_labels.npy", d.image_labels);
  zscrgan::write_npy_matrix(dir + "/text_features.npy", d.text_features);
  zscrgan::write_npy_labels(dir + "/text_labels.npy", d.text_labels);
  nlohmann::json meta;
  meta["name"] = d.name;
  meta["train_classes"] = d.train_classes;
  meta["test_classes"] = d.test_classes;
  zscrgan_test::write_bytes(dir + "/dataset.json", meta.dump());
  std::string msg = error_of([&] { zscrgan::load_dataset_folder(dir); });
  // Name the folder, then say what is wrong.
  EXPECT_EQ(msg.rfind(dir + ": ", 0), 0u) << msg;
  return msg.substr(std::min(msg.size(), dir.size() + 2));
}

TEST(Dataset, MismatchedRows) {
  auto d = tiny_dataset();
  d.image_labels.push_back(10);
  EXPECT_EQ(load_error(d), "image_features has 6 rows but image_labels has 7 entries");
  d = tiny_dataset();
  d.text_labels.pop_back();
  EXPECT_EQ(load_error(d), "text_features has 6 rows but text_labels has 5 entries");
}

TEST(Dataset, ClassInBothSplits) {
  auto d = tiny_dataset();
  d.test_classes.push_back(11);
  EXPECT_EQ(load_error(d), "class 11 is in both train_classes and test_classes");
  d = tiny_dataset();
  d.train_classes.push_back(10);
  EXPECT_EQ(load_error(d), "class 10 is listed twice in train_classes");
}

TEST(Dataset, SplitClassWithoutImagesOrTexts) {
  auto d = tiny_dataset();
  d.image_labels = {10, 10, 11, 11, 11, 11};  // class 20 loses its images
  EXPECT_EQ(load_error(d), "class 20 (test_classes) has no images");
  d = tiny_dataset();
  d.text_labels = {11, 10, 20, 20, 11, 20};  // class 10 keeps one text
  d.text_labels[1] = 11;                      // ... and now none
  EXPECT_EQ(load_error(d), "class 10 (train_classes) has no texts");
}

TEST(Dataset, EmptySplitAndUnknownClass) {
  auto d = tiny_dataset();
  d.test_classes.clear();
  d.image_labels = {10, 10, 11, 11, 11, 11};
  d.text_labels = {11, 10, 10, 10, 11, 11};
  EXPECT_EQ(load_error(d), "test_classes is empty");
  d = tiny_dataset();
  d.image_labels[5] = 99;
  EXPECT_EQ(load_error(d),
            "image 5 has class 99, which is in neither train_classes nor test_classes");
}

TEST(Dataset, NonFiniteFeatures) {
  auto d = tiny_dataset();
  d.text_features.data[5] = std::nanf("");
  EXPECT_EQ(load_error(d), "text_features row 2 has a non-finite value (nan at column 1)");
}

TEST(Dataset, ValidateChecksDimensions) {
  auto d = tiny_dataset();
  d.image_features.cols = 0;
  d.image_features.data.clear();
  EXPECT_EQ(error_of([&] { zscrgan::validate_dataset(d, "here"); }),
            "here: image_features has 0 columns; the dimension must be > 0");
  EXPECT_NO_THROW(zscrgan::validate_dataset(tiny_dataset(), "here"));
}

}  // namespace
