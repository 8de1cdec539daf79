// The program's edges: every kind of bad input gets one clear line on stderr naming the file,
// key or shape, a non-zero exit, and no output folder left behind.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "zscrgan/dataset.h"
#include "zscrgan/npy.h"

namespace fs = std::filesystem;

namespace zscrgan {
namespace {

struct CliResult {
  int exit_code;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("zscrgan_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    data_ = dir_ / "data";
    write_dataset_folder(tiny(), data_.string());
  }
  void TearDown() override { fs::remove_all(dir_); }

  static Dataset tiny() {
    SyntheticSpec s;
    s.seen_classes = 4;
    s.unseen_classes = 3;
    s.images_per_class = 20;
    s.texts_per_class = 2;
    s.text_dim = 6;
    s.image_dim = 8;
    s.latent_dim = 3;
    return make_synthetic_dataset(s);
  }

  // Writes config.json with the given body (keys inside the braces) and runs the program.
  CliResult run_with(const std::string& body, const std::string& extra_args = "") {
    const fs::path cfg = dir_ / "config.json";
    std::ofstream(cfg) << body;
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd = std::string(ZSCRGAN_CLI_PATH) + " --config " + cfg.string() + " " +
                            extra_args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }
  std::string valid_keys() const {
    return "\"dataset\": \"" + data_.string() + "\", \"output_dir\": \"" + (dir_ / "out").string() +
           "\", \"batch_size\": 4, \"gf_dim\": 8, \"df_dim\": 8, \"embed_dim\": 4, \"z_dim\": 2,"
           " \"rounds\": 1, \"e_step_iters\": 2, \"m_step_iters\": 2, \"top_k\": 5, \"device\": \"cpu\"";
  }
  void expect_clean_failure(const CliResult& r, const std::string& must_mention) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(must_mention), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line expected: " << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "out")) << "output left behind";
  }

  fs::path dir_, data_;
};

TEST_F(CliTest, ValidConfigTrainsAndWritesResults) {
  CliResult r = run_with("{" + valid_keys() + "}");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "config.json"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "metrics.jsonl"));
  EXPECT_NE(r.out.find("round 1/1"), std::string::npos) << r.out;
}

TEST_F(CliTest, MalformedJson) { expect_clean_failure(run_with("{" + valid_keys() + ","), "config.json"); }
TEST_F(CliTest, UnknownKey) { expect_clean_failure(run_with("{" + valid_keys() + ", \"batch_sise\": 3}"), "batch_sise"); }
TEST_F(CliTest, WrongType) { expect_clean_failure(run_with("{" + valid_keys() + ", \"clip_val\": \"small\"}"), "clip_val"); }
TEST_F(CliTest, NegativeSize) { expect_clean_failure(run_with("{" + valid_keys() + ", \"gf_dim\": -8}"), "gf_dim"); }
TEST_F(CliTest, ZeroLearningRate) { expect_clean_failure(run_with("{" + valid_keys() + ", \"generator_lr\": 0}"), "generator_lr"); }
TEST_F(CliTest, BadOverride) { expect_clean_failure(run_with("{" + valid_keys() + "}", "--set batch_size=0"), "batch_size"); }

TEST_F(CliTest, MissingDatasetFolder) {
  fs::remove_all(data_);
  expect_clean_failure(run_with("{" + valid_keys() + "}"), data_.string());
}

TEST_F(CliTest, MissingFile) {
  fs::remove(data_ / "text_labels.npy");
  expect_clean_failure(run_with("{" + valid_keys() + "}"), "text_labels.npy");
}

TEST_F(CliTest, TruncatedNpy) {
  const fs::path f = data_ / "image_features.npy";
  fs::resize_file(f, fs::file_size(f) - 7);
  expect_clean_failure(run_with("{" + valid_keys() + "}"), "image_features.npy");
}

TEST_F(CliTest, NonFloatNpy) {
  write_npy_labels((data_ / "image_features.npy").string(), {1, 2, 3});
  expect_clean_failure(run_with("{" + valid_keys() + "}"), "image_features.npy");
}

TEST_F(CliTest, MismatchedRowCounts) {
  std::vector<int64_t> labels = read_npy_labels((data_ / "image_labels.npy").string());
  labels.pop_back();
  write_npy_labels((data_ / "image_labels.npy").string(), labels);
  expect_clean_failure(run_with("{" + valid_keys() + "}"), "image");
}

TEST_F(CliTest, ClassInBothSplits) {
  Dataset d = load_dataset_folder(data_.string());
  std::ofstream(data_ / "dataset.json")
      << "{\"name\": \"x\", \"train_classes\": [" << d.train_classes[0] << ", " << d.train_classes[1]
      << "], \"test_classes\": [" << d.train_classes[0] << ", " << d.test_classes[0] << "]}";
  expect_clean_failure(run_with("{" + valid_keys() + "}"), std::to_string(d.train_classes[0]));
}

TEST_F(CliTest, SplitClassWithoutImages) {
  Dataset d = load_dataset_folder(data_.string());
  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t c : v) s += (s.empty() ? "" : ", ") + std::to_string(c);
    return s;
  };
  std::ofstream(data_ / "dataset.json") << "{\"name\": \"x\", \"train_classes\": [" << list(d.train_classes)
                                        << "], \"test_classes\": [" << list(d.test_classes) << ", 4242]}";
  expect_clean_failure(run_with("{" + valid_keys() + "}"), "4242");
}

TEST_F(CliTest, SplitClassWithoutTexts) {
  Dataset d = load_dataset_folder(data_.string());
  // Relabel every text of the first unseen class to another unseen class.
  for (auto& l : d.text_labels)
    if (l == d.test_classes[0]) l = d.test_classes[1];
  write_npy_labels((data_ / "text_labels.npy").string(), d.text_labels);
  expect_clean_failure(run_with("{" + valid_keys() + "}"), std::to_string(d.test_classes[0]));
}

TEST_F(CliTest, CudaWithoutAGpuIsAClearError) {
  CliResult r = run_with("{" + valid_keys() + "}", "--device cuda");
  if (r.exit_code == 0) GTEST_SKIP() << "a GPU is usable here";
  expect_clean_failure(r, "cuda");
}

TEST_F(CliTest, HelpAndVersion) {
  const std::string cli = ZSCRGAN_CLI_PATH;
  EXPECT_EQ(std::system((cli + " --help >/dev/null").c_str()), 0);
  EXPECT_EQ(std::system((cli + " --version >/dev/null").c_str()), 0);
  EXPECT_NE(std::system((cli + " --bogus 2>/dev/null").c_str()), 0);
}

}  // namespace
}  // namespace zscrgan

namespace zscrgan {
namespace {
TEST_F(CliTest, SyntheticDatasetIsWrittenInTheInterchangeFormat) {
  const fs::path out = dir_ / "synthetic";
  const std::string cmd = std::string(ZSCRGAN_CLI_PATH) + " synthetic --out " + out.string() +
                          " --set synthetic.seed=9 --set synthetic.unseen_classes=5 >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  SyntheticSpec spec;
  spec.seed = 9;
  spec.unseen_classes = 5;
  const Dataset want = make_synthetic_dataset(spec), got = load_dataset_folder(out.string());
  EXPECT_EQ(got.image_features.data, want.image_features.data);
  EXPECT_EQ(got.text_features.data, want.text_features.data);
  EXPECT_EQ(got.image_labels, want.image_labels);
  EXPECT_EQ(got.test_classes, want.test_classes);
}
}  // namespace
}  // namespace zscrgan
