// The program's edges: every kind of bad input gets one clear line on stderr naming the file,
// key or shape, a non-zero exit, and no output folder left behind.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <cmath>
#include <algorithm>
#include <set>
#include <string>

#include "train/checkpoint.h"
#include "data/dataset.h"
#include "data/dataset_source.h"
#include "formats/npy.h"

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

// ---- bad inputs, table-driven -------------------------------------------------------------------
// (One argument may hold at most 128 KiB on Linux, so the huge inputs go through files.)
//
// Every case starts from a fresh copy of a workspace (a dataset folder, a valid config, a trained
// run with its checkpoints, query and gallery .npy files), breaks one thing, and runs one command.
// Each must give exactly one line on stderr (at most 2,000 bytes, no raw control bytes, valid
// UTF-8) holding the expected words, exit with a code in 1..127, and leave the workspace as it
// was: nothing created, nothing removed, no file changed in size.

#include <fcntl.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <tuple>

#include "core/error.h"

#ifdef ZSCRGAN_HAVE_MATIO
#include <matio.h>
#endif

namespace zscrgan {
namespace {

// Runs the program with exactly these arguments (no shell: any bytes may appear in them).
CliResult run_cli(const std::vector<std::string>& args, const fs::path& logs) {
  const fs::path out = logs / "stdout", err = logs / "stderr";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    // An ISA cap set for the suite (tools/run_tests.sh's second pass) makes the program warn
    // about slow kernels on its own line; these tests count the lines of the program's messages.
    ::unsetenv("ONEDNN_MAX_CPU_ISA");
    ::unsetenv("DNNL_MAX_CPU_ISA");
    std::vector<std::string> copy = args;
    std::string cli = ZSCRGAN_CLI_PATH;
    std::vector<char*> argv{cli.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(cli.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

// Every path under `root` with its size (-1 for a folder).
std::map<std::string, intmax_t> snapshot(const fs::path& root) {
  std::map<std::string, intmax_t> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    out[it->path().lexically_relative(root).string()] =
        it->is_directory() ? -1 : static_cast<intmax_t>(it->file_size());
  return out;
}

std::string text_of_size(size_t n, char c) { return std::string(n, c); }

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

void truncate_by(const fs::path& p, uintmax_t bytes) { fs::resize_file(p, fs::file_size(p) - bytes); }

void flip_byte(const fs::path& p, std::streamoff at_from_end) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-at_from_end, std::ios::end);
  char c;
  f.read(&c, 1);
  c ^= 0x01;
  f.seekp(-at_from_end, std::ios::end);
  f.write(&c, 1);
}

// A .npy file with the given header dict text (padded as numpy pads it) and data bytes.
std::string npy_with_header(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>(h.size() >> 8);
  return out + h + data;
}

struct Workspace {
  fs::path root;
  fs::path data() const { return root / "data"; }
  fs::path config() const { return root / "config.json"; }
  fs::path run() const { return root / "run"; }
  fs::path model() const { return root / "run" / "checkpoints" / "last.safetensors"; }
  fs::path texts() const { return root / "texts.npy"; }
  fs::path gallery() const { return root / "gallery.npy"; }
  fs::path out() const { return root / "out"; }
  std::vector<std::string> train() const { return {"--config", config().string()}; }
  std::vector<std::string> retrieve() const {
    return {"retrieve", "--checkpoint", model().string(), "--texts", texts().string(),
            "--gallery", gallery().string(), "--out", (root / "r.json").string(), "--device", "cpu"};
  }
  std::vector<std::string> embed() const {
    return {"embed", "--checkpoint", model().string(), "--texts", texts().string(),
            "--out", (root / "emb").string(), "--device", "cpu"};
  }
  // The valid config, with `extra` (", \"key\": value ...") added; a key of the valid config
  // that `extra` starts with is replaced by it.
  void set_config(const std::string& extra) const {
    const std::vector<std::pair<std::string, std::string>> valid = {
        {"dataset", "\"" + data().string() + "\""}, {"output_dir", "\"" + out().string() + "\""},
        {"batch_size", "4"}, {"gf_dim", "8"}, {"df_dim", "8"}, {"embed_dim", "4"}, {"z_dim", "2"},
        {"rounds", "1"}, {"e_step_iters", "2"}, {"m_step_iters", "2"}, {"top_k", "5"},
        {"device", "\"cpu\""}};
    std::string replaced;
    if (extra.rfind(", \"", 0) == 0) replaced = extra.substr(3, extra.find('"', 3) - 3);
    std::string body;
    for (const auto& [k, v] : valid)
      if (k != replaced) body += (body.empty() ? "" : ", ") + ("\"" + k + "\": " + v);
    std::ofstream(config(), std::ios::binary | std::ios::trunc) << "{" << body << extra << "}";
  }
};

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct BadCase {
  const char* name;
  std::function<std::vector<std::string>(const Workspace&)> setup;  // breaks one thing, returns the arguments
  std::string must_mention;
};

std::vector<BadCase> bad_cases() {
  using W = const Workspace&;
  using A = std::vector<std::string>;
  auto deep = [](size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  auto deep_objects = [](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += "{\"a\": ";
    return s + "1" + std::string(n, '}');
  };
  const std::string not_utf8 = "\xff\xfe\xc3";
  std::vector<BadCase> c = {
      // ---- the config file and --set
      {"malformed JSON", [](W w) { w.set_config(","); return w.train(); }, "config.json"},
      {"unknown key", [](W w) { w.set_config(", \"batch_sise\": 3"); return w.train(); }, "batch_sise"},
      {"wrong type", [](W w) { w.set_config(", \"clip_val\": \"small\""); return w.train(); }, "clip_val"},
      {"negative size", [](W w) { w.set_config(", \"gf_dim\": -8"); return w.train(); }, "gf_dim"},
      {"zero learning rate", [](W w) { w.set_config(", \"generator_lr\": 0"); return w.train(); }, "generator_lr"},
      {"integer past int32", [](W w) { w.set_config(", \"rounds\": 4294967297"); return w.train(); }, "rounds"},
      {"number overflow", [](W w) { w.set_config(", \"clip_val\": 1e400"); return w.train(); }, "config.json"},
      {"duplicate key", [](W w) { w.set_config(", \"seed\": 1, \"seed\": 2"); return w.train(); }, "seed"},
      {"top level not an object", [](W w) { std::ofstream(w.config()) << "[1, 2]"; return w.train(); }, "object"},
      {"empty config", [](W w) { std::ofstream(w.config()) << ""; return w.train(); }, "config.json"},
      {"config is a folder", [](W w) { fs::remove(w.config()); fs::create_directory(w.config()); return w.train(); }, "config.json"},
      {"config missing", [](W w) { fs::remove(w.config()); return w.train(); }, "config.json"},
      {"config not UTF-8", [=](W w) { w.set_config(", \"device\": \"" + not_utf8 + "\""); return w.train(); }, "config.json"},
      {"deep arrays in config (75k levels)", [=](W w) { w.set_config(", \"seed\": " + deep(75000)); return w.train(); }, "nested deeper than 64"},
      {"deep objects in config", [=](W w) { w.set_config(", \"synthetic\": " + deep_objects(100)); return w.train(); }, "nested deeper than 64"},
      {"raw newline in a key", [](W w) { w.set_config(", \"bad\nkey\": 1"); return w.train(); }, "config.json:1:"},
      {"escaped newline in a key", [](W w) { w.set_config(", \"bad\\nkey\": 1"); return w.train(); }, "'bad\\nkey'"},
      {"control bytes in a value", [](W w) { w.set_config(", \"device\": \"cp\\u0007u\\r\""); return w.train(); }, "device"},
      {"10 MB key", [](W w) { w.set_config(", \"" + text_of_size(10 << 20, 'k') + "\": 1"); return w.train(); }, "10485760 bytes"},
      {"10 MB value", [](W w) { w.set_config(", \"device\": \"" + text_of_size(10 << 20, 'v') + "\""); return w.train(); }, "device"},
      {"--set out of range", [](W w) { return plus(w.train(), {"--set", "batch_size=0"}); }, "batch_size"},
      {"--set not UTF-8", [=](W w) { return plus(w.train(), {"--set", "batch_size=" + not_utf8}); }, "batch_size"},
      {"--set without =", [](W w) { return plus(w.train(), {"--set", "batch_size"}); }, "key=value"},
      {"--set unknown nested key", [](W w) { return plus(w.train(), {"--set", "synthetic.nope=1"}); }, "synthetic.nope"},
      {"--set key into a leaf", [](W w) { return plus(w.train(), {"--set", "seed.x=1"}); }, "seed.x"},
      {"--set deep JSON value", [=](W w) { return plus(w.train(), {"--set", "seed=" + deep(60000)}); }, "nested deeper than 64"},
      {"--set newline in key", [](W w) { return plus(w.train(), {"--set", "a\nb=1"}); }, "a\\nb"},
      {"--set 100 KB key", [](W w) { return plus(w.train(), {"--set", text_of_size(100000, 'q') + "=1"}); }, "(100000 bytes)"},
      {"--device bogus", [](W w) { return plus(w.train(), {"--device", "tpu"}); }, "device"},
      // ---- command-line options
      {"--top-k wraps past 2^32", [](W w) { return plus(w.retrieve(), {"--top-k", "4294967297"}); }, "--top-k"},
      {"--top-k past int64", [](W w) { return plus(w.retrieve(), {"--top-k", "99999999999999999999999"}); }, "--top-k"},
      {"--top-k negative", [](W w) { return plus(w.retrieve(), {"--top-k", "-1"}); }, "--top-k"},
      {"--top-k not a number", [](W w) { return plus(w.retrieve(), {"--top-k", "5x"}); }, "--top-k"},
      {"--top-k empty", [](W w) { return plus(w.retrieve(), {"--top-k", ""}); }, "--top-k"},
      {"--samples zero", [](W w) { return plus(w.embed(), {"--samples", "0"}); }, "--samples"},
      {"--seed negative", [](W w) { return plus(w.embed(), {"--seed", "-1"}); }, "--seed"},
      {"--seed past uint64", [](W w) { return plus(w.embed(), {"--seed", "18446744073709551616"}); }, "--seed"},
      {"--chunk-rows past int32", [](W w) { return plus(w.retrieve(), {"--chunk-rows", "4294967296"}); }, "--chunk-rows"},
      {"unknown option", [](W w) { return plus(w.retrieve(), {"--bogus", "1"}); }, "--bogus"},
      {"option without its value", [](W) { return A{"--config"}; }, "--config"},
      {"stray argument with control bytes", [](W) { return A{"emb\x1b[2Jed"}; }, "\\x1b"},
      {"retrieve without --texts", [](W w) { return A{"retrieve", "--checkpoint", w.model().string()}; }, "--texts"},
      {"no config and no resume", [](W) { return A{"--set", "rounds=1"}; }, "--config"},
      // ---- the dataset folder
      {"dataset folder missing", [](W w) { fs::remove_all(w.data()); return w.train(); }, "data"},
      {"dataset file missing", [](W w) { fs::remove(w.data() / "text_labels.npy"); return w.train(); }, "text_labels.npy"},
      {".npy cut by 7 bytes", [](W w) { truncate_by(w.data() / "image_features.npy", 7); return w.train(); }, "image_features.npy"},
      {".npy cut inside the header", [](W w) { fs::resize_file(w.data() / "image_features.npy", 40); return w.train(); }, "image_features.npy"},
      {".npy cut inside the preamble", [](W w) { fs::resize_file(w.data() / "image_labels.npy", 7); return w.train(); }, "image_labels.npy"},
      {".npy magic flipped", [](W w) { std::fstream f(w.data() / "text_features.npy", std::ios::in | std::ios::out | std::ios::binary); f.put('X'); return w.train(); }, "text_features.npy"},
      {".npy header with control bytes and a newline", [](W w) {
         write_raw(w.data() / "image_features.npy", npy_with_header("{'descr': '<f\x01\n4', 'fortran_order': False, 'shape': (1, 8), }", std::string(32, '\0')));
         return w.train(); }, "\\x01"},
      {".npy integer features", [](W w) { write_npy_labels((w.data() / "image_features.npy").string(), {1, 2, 3}); return w.train(); }, "image_features.npy"},
      {".npy float labels", [](W w) {
         HostMatrix m; m.rows = 2; m.cols = 1; m.data = {1, 2};
         write_npy_matrix((w.data() / "image_labels.npy").string(), m); return w.train(); }, "image_labels.npy"},
      {".npy shape overflows", [](W w) {
         write_raw(w.data() / "image_features.npy", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }", ""));
         return w.train(); }, "image_features.npy"},
      {".npy big-endian", [](W w) {
         write_raw(w.data() / "image_features.npy", npy_with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 8), }", std::string(32, '\0')));
         return w.train(); }, "big-endian"},
      {".npy Fortran order", [](W w) {
         write_raw(w.data() / "image_features.npy", npy_with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 8), }", std::string(32, '\0')));
         return w.train(); }, "fortran_order"},
      {".npy data bit flip makes a NaN", [](W w) {
         HostMatrix m = read_npy_matrix((w.data() / "image_features.npy").string());
         m.data[5] = std::nanf("");
         write_npy_matrix((w.data() / "image_features.npy").string(), m); return w.train(); }, "non-finite"},
      {"label rows do not match", [](W w) {
         auto l = read_npy_labels((w.data() / "image_labels.npy").string()); l.pop_back();
         write_npy_labels((w.data() / "image_labels.npy").string(), l); return w.train(); }, "image"},
      {"dataset.json nested 75k deep", [=](W w) { std::ofstream(w.data() / "dataset.json") << deep(75000); return w.train(); }, "nested deeper than 64"},
      {"dataset.json not an object", [](W w) { std::ofstream(w.data() / "dataset.json") << "\"x\""; return w.train(); }, "dataset.json"},
      {"dataset.json key with control bytes", [](W w) { std::ofstream(w.data() / "dataset.json") << "{\"na\\u001bme\": 1}"; return w.train(); }, "\\x1b"},
      {"dataset.json class list of strings", [](W w) { std::ofstream(w.data() / "dataset.json") << "{\"train_classes\": [\"a\"], \"test_classes\": [1]}"; return w.train(); }, "train_classes"},
      // ---- checkpoints
      {"checkpoint cut short", [](W w) { truncate_by(w.model(), 100); return w.retrieve(); }, "last.safetensors"},
      {"checkpoint cut to its header", [](W w) { fs::resize_file(w.model(), 12); return w.embed(); }, "last.safetensors"},
      {"checkpoint tensor bit flip", [](W w) { flip_byte(w.model(), 10); return w.embed(); }, "corrupted"},
      {"checkpoint header bit flip", [](W w) { std::fstream f(w.model(), std::ios::in | std::ios::out | std::ios::binary); f.seekp(8); f.put('['); return w.retrieve(); }, "last.safetensors"},
      {"checkpoint best_score digit changed", [](W w) {
         std::string b = slurp(w.model());
         const size_t at = b.find("best_score\\\":") + 13;
         b[at] = b[at] == '9' ? '8' : static_cast<char>(b[at] == '0' ? '1' : b[at] + 1);
         write_raw(w.model(), b); return A{"--resume", w.run().string()}; }, "corrupted"},
      {"resume from a folder without checkpoints", [](W w) { fs::remove_all(w.run() / "checkpoints"); return A{"--resume", w.run().string()}; }, "last.safetensors"},
      {"resume with a changed training key", [](W w) { return A{"--resume", w.run().string(), "--set", "gf_dim=16"}; }, "gf_dim"},
      {"train on an unknown --device", [](W w) { return plus(w.train(), {"--device", "tpu"}); }, "--device must be auto, cpu or cuda"},
      {"embed on an unknown --device", [](W w) { auto a = w.embed(); a[8] = "tpu"; return a; }, "--device must be auto, cpu or cuda"},
      {"resume into another folder", [](W w) { return A{"--resume", w.run().string(), "--set", "output_dir=/tmp/elsewhere"}; }, "stays in its folder"},
      {"a new run into an earlier run's folder", [](W w) { return plus(w.train(), {"--set", "output_dir=" + w.run().string(), "--set", "rounds=2"}); }, "holds an earlier run"},
      {"a new run into an earlier run's folder, its metrics only", [](W w) {
         fs::remove_all(w.run() / "checkpoints");
         return plus(w.train(), {"--set", "output_dir=" + w.run().string()}); }, "metrics.jsonl"},
      {"evaluate with a model key set", [](W w) { return A{"evaluate", "--checkpoint", w.model().string(), "--device", "cpu", "--set", "gf_dim=16"}; }, "evaluation does not read"},
      {"--overwrite with --resume", [](W w) { return A{"--resume", w.run().string(), "--overwrite"}; }, "--overwrite replaces"},
      {"retrieve with queries of the wrong width", [](W w) {
         HostMatrix m; m.rows = 2; m.cols = 5; m.data.assign(10, 0.5f);
         write_npy_matrix(w.texts().string(), m); return w.retrieve(); }, "texts.npy"},
      {"retrieve with a truncated gallery", [](W w) { truncate_by(w.gallery(), 3); return w.retrieve(); }, "gallery.npy"},
      {"retrieve top-k past the gallery", [](W w) { return plus(w.retrieve(), {"--top-k", "100000"}); }, "gallery.npy"},
      // ---- outputs that cannot be written
      {"embed output under a file", [](W w) { auto a = w.embed(); a[6] = (w.texts() / "sub").string(); return a; }, "sub"},
      {"retrieve output under a file", [](W w) { auto a = w.retrieve(); a[8] = (w.texts() / "r.json").string(); return a; }, "r.json"},
      {"training output under a file", [](W w) { return plus(w.train(), {"--set", "output_dir=" + (w.texts() / "run").string()}); }, "texts.npy"},
      {"synthetic output under a file", [](W w) { return A{"synthetic", "--out", (w.texts() / "syn").string()}; }, "syn"},
      {"embed of a NaN text into new folders", [](W w) {
         HostMatrix m = read_npy_matrix(w.texts().string());
         m.data[m.data.size() - 1] = std::nanf("");
         write_npy_matrix(w.texts().string(), m);
         auto a = w.embed(); a[6] = (w.root / "new" / "a" / "b").string(); return a; }, "texts.npy"},
      {"embed into a folder holding the other embeddings", [](W w) {
         fs::create_directories(w.root / "emb");
         write_raw(w.root / "emb" / "image_embeddings.npy", "earlier");
         return w.embed(); }, "image_embeddings.npy' from an earlier embed"},
      {"retrieve into a folder", [](W w) { fs::create_directories(w.root / "r.json"); return w.retrieve(); }, "is a folder"},
      // ---- options that would change nothing
      {"an option given twice", [](W w) { return plus(w.retrieve(), {"--top-k", "3", "--top-k", "2"}); }, "--top-k is given twice"},
      {"synthetic with a training key", [](W w) { return A{"synthetic", "--out", (w.root / "syn").string(), "--set", "rounds=5"}; }, "only the synthetic.* keys"},
      {"embed images with --samples", [](W w) {
         return A{"embed", "--checkpoint", w.model().string(), "--images", w.gallery().string(), "--out",
                  (w.root / "emb").string(), "--device", "cpu", "--samples", "3"}; }, "--samples shapes the text queries"},
      {"embed texts with --chunk-rows", [](W w) { return plus(w.embed(), {"--chunk-rows", "5"}); }, "--chunk-rows"},
      {"synthetic with a bad setting", [](W w) { return A{"synthetic", "--out", (w.root / "syn").string(), "--set", "synthetic.seen_classes=0"}; }, "synthetic.seen_classes"},
      // ---- import
      {"import unknown format", [](W w) { return A{"import", "--format", "csv", "--input", w.data().string(), "--output", w.out().string()}; }, "csv"},
      {"import input missing", [](W w) { return A{"import", "--format", "xlsa17", "--input", (w.root / "nope").string(), "--output", w.out().string()}; }, "nope"},
      {"import interchange from a broken folder", [](W w) { fs::remove(w.data() / "image_labels.npy"); return A{"import", "--format", "interchange", "--input", w.data().string(), "--output", w.out().string()}; }, "image_labels.npy"},
      {"import output under a file", [](W w) { return A{"import", "--format", "interchange", "--input", w.data().string(), "--output", (w.texts() / "new" / "ds").string()}; }, "ds"},
      {"import misplaced option", [](W w) { return A{"import", "--format", "gazsl", "--input", w.data().string(), "--output", w.out().string(), "--original-att"}; }, "original-att"},
  };
#ifdef ZSCRGAN_HAVE_MATIO
  // An xlsa17 folder: res101.mat (12 images of 64-d features, and their labels) and a complete
  // att_splits.mat.
  auto write_xlsa17 = [](const fs::path& in, bool compressed, bool features_first) {
    fs::create_directories(in);
    mat_t* m = Mat_CreateVer((in / "res101.mat").c_str(), nullptr, MAT_FT_MAT5);
    std::vector<double> labels(12), features(64 * 12);
    // images 1-6 (trainval) of classes 1 and 2, images 7-12 (test_unseen 7-10) of 3 and 4
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = (i < 6 ? 1 : 3) + i % 2;
    for (size_t i = 0; i < features.size(); ++i) features[i] = 0.5 + i;
    size_t ld[2] = {12, 1}, fd[2] = {64, 12};
    matvar_t* l = Mat_VarCreate("labels", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, ld, labels.data(), MAT_F_DONT_COPY_DATA);
    matvar_t* f = Mat_VarCreate("features", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, fd, features.data(), MAT_F_DONT_COPY_DATA);
    const auto z = compressed ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
    Mat_VarWrite(m, features_first ? f : l, z);
    Mat_VarWrite(m, features_first ? l : f, z);
    Mat_VarFree(l);
    Mat_VarFree(f);
    Mat_Close(m);
    m = Mat_CreateVer((in / "att_splits.mat").c_str(), nullptr, MAT_FT_MAT5);
    std::vector<double> att(4 * 4, 0.25), trainval = {1, 2, 3, 4, 5, 6}, unseen = {7, 8, 9, 10};
    size_t ad[2] = {4, 4}, td[2] = {6, 1}, ud[2] = {4, 1};
    for (auto [name, data, dims] : {std::tuple{"att", att.data(), ad}, std::tuple{"trainval_loc", trainval.data(), td},
                                    std::tuple{"test_unseen_loc", unseen.data(), ud}}) {
      matvar_t* v = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, data, MAT_F_DONT_COPY_DATA);
      Mat_VarWrite(m, v, MAT_COMPRESSION_NONE);
      Mat_VarFree(v);
    }
    Mat_Close(m);
  };
  // xlsa17 folders whose res101.mat is cut short (matio alone would import zeros; it warns
  // while listing the variables).
  for (int compressed = 0; compressed < 2; ++compressed) {
    for (int cut : {5, 300, -40}) {  // bytes off the end, or (negative) percent of the file
      static std::vector<std::string> names;
      names.push_back(std::string("xlsa17 res101.mat ") + (compressed ? "compressed, " : "") +
                      (cut < 0 ? "cut to " + std::to_string(100 + cut) + "%" : "cut by " + std::to_string(cut)));
      c.push_back({names.back().c_str(), [=](W w) {
        const fs::path in = w.root / "xlsa";
        write_xlsa17(in, compressed, false);
        const fs::path res101 = in / "res101.mat";
        if (cut < 0)
          fs::resize_file(res101, fs::file_size(res101) * (100 + cut) / 100);
        else
          truncate_by(res101, cut);
        return A{"import", "--format", "xlsa17", "--input", in.string(), "--output", w.out().string()}; }, "res101.mat"});
    }
  }
  // The last 2 of the 12 feature columns taken out of the file, and the byte counts of the
  // `features` element and of its data part lowered to match: the file is consistent to its
  // end, and matio, asked for 64 x 12 values, reads the 640 there, then the `labels` element's
  // bytes as values, then nothing, without a warning (the import would succeed with 128 wrong
  // values). Only the check of the dimensions against the data part refuses it.
  c.push_back({"xlsa17 res101.mat features hold 10 of their 12 columns", [=](W w) {
    const fs::path in = w.root / "xlsa";
    write_xlsa17(in, false, true);
    std::string bytes;
    {
      std::ifstream f(in / "res101.mat", std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    // matio's layout: the 128-byte header, then the miMATRIX tag (type 14, byte count), array
    // flags (16 bytes), dimensions (16), the name "features" (16), the miDOUBLE data tag.
    auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, &bytes[at], 4); return v; };
    auto set_u32 = [&](size_t at, uint32_t v) { std::memcpy(&bytes[at], &v, 4); };
    const uint32_t cut = 2 * 64 * 8;
    if (bytes.size() < 192 + 768 * 8 || u32(128) != 14 || u32(184) != 9 || u32(188) != 768 * 8)
      throw std::runtime_error("unexpected layout of matio's res101.mat");
    set_u32(132, u32(132) - cut);
    set_u32(188, u32(188) - cut);
    bytes.erase(192 + 640 * 8, cut);
    std::ofstream(in / "res101.mat", std::ios::binary | std::ios::trunc) << bytes;
    return A{"import", "--format", "xlsa17", "--input", in.string(), "--output", w.out().string()}; },
    "holds 640"});
#endif
  return c;
}

class CliBadInputs : public CliTest {};

TEST_F(CliBadInputs, EveryCaseIsOneClearLineANonZeroExitAndNothingLeftBehind) {
  // The workspace every case starts from.
  const fs::path base = dir_ / "base";
  Workspace pristine{base};
  fs::create_directories(base);
  fs::rename(data_, pristine.data());
  pristine.set_config("");
  {
    const CliResult r = run_cli(plus(pristine.train(), {"--set", "output_dir=" + pristine.run().string()}), dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const Dataset d = load_dataset_folder(pristine.data().string());
  write_npy_matrix(pristine.texts().string(), d.text_features);
  write_npy_matrix(pristine.gallery().string(), d.image_features);
  {
    const CliResult r = run_cli(plus(pristine.retrieve(), {"--top-k", "3"}), dir_);
    ASSERT_EQ(r.exit_code, 0) << "the unbroken workspace must work: " << r.err;
    fs::remove(base / "r.json");
  }

  const std::vector<BadCase> cases = bad_cases();
  EXPECT_GE(cases.size(), 50u);
  std::set<std::string> names;
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(names.insert(c.name).second) << "a repeated case";
    const Workspace w{dir_ / "case"};
    fs::remove_all(w.root);
    fs::copy(base, w.root, fs::copy_options::recursive);
    w.set_config("");  // naming this copy's dataset and output folder
    const std::vector<std::string> args = c.setup(w);
    const auto before = snapshot(w.root);
    const CliResult r = run_cli(args, dir_);
    if (std::getenv("ZSCRGAN_SHOW_CASES")) std::printf("%-50s %d %s", c.name, r.exit_code, r.err.c_str());
    EXPECT_GE(r.exit_code, 1);
    EXPECT_LT(r.exit_code, 128);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line expected: " << printable(r.err, 600);
    EXPECT_TRUE(r.err.size() <= 2000 && is_valid_utf8(r.err)) << r.err.size() << " bytes: " << printable(r.err, 600);
    EXPECT_EQ(std::count_if(r.err.begin(), r.err.end(), [](char ch) { return ch >= 0 && ch < 0x20 && ch != '\n'; }), 0)
        << printable(r.err, 600);
    EXPECT_EQ(r.err.rfind("zscrgan_cuda: ", 0), 0u) << printable(r.err, 600);
    EXPECT_NE(r.err.find(c.must_mention), std::string::npos) << "'" << c.must_mention << "' in: " << printable(r.err, 600);
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << printable(r.err, 600);
    EXPECT_EQ(snapshot(w.root), before) << "the workspace changed";
  }
}

}  // namespace
}  // namespace zscrgan

namespace zscrgan {
namespace {

// Paths are bytes: a folder name that is not UTF-8 works as an import's output, as a training
// run's dataset and output folder, and a plain --resume finds both again from the stored
// config (which keeps them as {"bytes_hex": ...}, not with replacement characters).
TEST_F(CliTest, PathsThatAreNotUtf8AreKeptByteForByte) {
  const std::string odd = "\xff\xfe" "ds\x80";
  const fs::path imported = dir_ / odd / "data";
  CliResult r = run_cli({"import", "--format", "interchange", "--input", data_.string(), "--output",
                         imported.string()}, dir_);
  ASSERT_EQ(r.exit_code, 0) << printable(r.err);
  EXPECT_EQ(load_dataset_folder(imported.string()).image_features.data,
            load_dataset_folder(data_.string()).image_features.data);

  const fs::path out = dir_ / ("run" + odd);
  std::ofstream(dir_ / "config.json") << "{" << valid_keys() << "}";
  r = run_cli({"--config", (dir_ / "config.json").string(), "--set", "dataset=" + imported.string(),
               "--set", "output_dir=" + out.string()}, dir_);
  ASSERT_EQ(r.exit_code, 0) << printable(r.err);
  const std::string stored = slurp(out / "config.json");
  EXPECT_NE(stored.find("\"bytes_hex\""), std::string::npos) << printable(stored);
  EXPECT_EQ(stored.find("\xef\xbf\xbd"), std::string::npos) << "a replacement character: " << printable(stored);
  r = run_cli({"--resume", out.string(), "--set", "rounds=2"}, dir_);
  ASSERT_EQ(r.exit_code, 0) << printable(r.err);
  EXPECT_NE(r.out.find("round 2/2"), std::string::npos) << printable(r.out);
}

// --resume DIR --config FILE stays in DIR; when the file names another output_dir, it says so.
TEST_F(CliTest, ResumeWithAConfigNamingAnotherFolderSaysTheRunStaysInItsOwn) {
  std::ofstream(dir_ / "config.json") << "{" << valid_keys() << "}";
  const fs::path run = dir_ / "run";
  CliResult r = run_cli({"--config", (dir_ / "config.json").string(), "--set", "output_dir=" + run.string()}, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A config naming the run's own folder, spelled otherwise: no note.
  std::string same = "{" + valid_keys() + "}";
  const std::string out_key = "\"output_dir\": \"" + (dir_ / "out").string() + "\"";
  same.replace(same.find(out_key), out_key.size(), "\"output_dir\": \"" + (dir_ / "." / "run").string() + "/\"");
  std::ofstream(dir_ / "same.json") << same;
  r = run_cli({"--resume", run.string(), "--config", (dir_ / "same.json").string(), "--set", "rounds=2"}, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("is not used"), std::string::npos) << r.out;
  r = run_cli({"--resume", run.string(), "--config", (dir_ / "config.json").string(), "--set", "rounds=3"}, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("note: the run stays in " + run.string()), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "out" / "checkpoints")) << "trained into the config's folder";
}

// A run killed between writing `last` and `best` for a round that beat the best leaves `best`
// missing (the first round) or older (a later one); --resume rebuilds it from `last`, so both
// agree with the best the run reports. Temporaries a killed writer left are removed.
TEST_F(CliTest, ResumeRebuildsABestThatTheRunStoppedBeforeWriting) {
  const std::string config = R"({"dataset": "synthetic", "batch_size": 16, "gf_dim": 64, "df_dim": 32,
    "embed_dim": 16, "z_dim": 8, "e_step_iters": 100, "m_step_iters": 100, "top_k": 10, "device": "cpu",
    "seed": 3, "synthetic": {"seen_classes": 10, "unseen_classes": 5, "images_per_class": 20,
    "texts_per_class": 2, "text_dim": 16, "image_dim": 24, "latent_dim": 4}})";
  std::ofstream(dir_ / "config.json") << config;
  const fs::path run = dir_ / "run", early = dir_ / "early";
  auto train = [&](const fs::path& out, int rounds) {
    return run_cli({"--config", (dir_ / "config.json").string(), "--set", "rounds=" + std::to_string(rounds),
                    "--set", "output_dir=" + out.string()}, dir_);
  };
  // A run whose last round beat an earlier best: train on, one resumed round at a time (a
  // resumed run equals an uninterrupted one), until a round after the first is a new best.
  // Which round that is depends on the machine's GEMM rounding, so the test does not fix it.
  const fs::path last = run / "checkpoints" / "last.safetensors", best = run / "checkpoints" / "best.safetensors";
  ASSERT_EQ(train(run, 1).exit_code, 0);
  int best_round = 0;
  for (int rounds = 2; rounds <= 12 && best_round == 0; ++rounds) {
    const CliResult r = run_cli({"--resume", run.string(), "--set", "rounds=" + std::to_string(rounds)}, dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const CheckpointStanding s = checkpoint_standing(last.string());
    ASSERT_EQ(s.round, rounds);
    if (s.best_round == rounds) best_round = rounds;
  }
  ASSERT_GE(best_round, 2) << "no round after the first beat the best within 12 rounds";
  ASSERT_EQ(train(early, 1).exit_code, 0);
  ASSERT_EQ(checkpoint_standing((early / "checkpoints" / "best.safetensors").string()).round, 1);
  const std::string last_bytes = slurp(last);

  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant == 0 ? "best missing" : variant == 1 ? "best from round 1" : "best damaged");
    fs::remove(best);
    if (variant == 1) fs::copy_file(early / "checkpoints" / "best.safetensors", best);
    if (variant == 2) {
      fs::copy_file(last, best);
      flip_byte(best, 10);  // a tensor byte: the content hash no longer matches
    }
    const std::string damaged = variant == 2 ? slurp(best) : "";
    std::ofstream(last.string() + ".tmp-0123456789ab") << "half a checkpoint";
    const CliResult r = run_cli({"--resume", run.string()}, dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    if (variant == 2) {
      EXPECT_NE(r.out.find("cannot be read"), std::string::npos) << r.out;
      EXPECT_EQ(slurp(best.string() + ".damaged"), damaged) << "the damaged file is kept aside";
    }
    EXPECT_NE(r.out.find("rebuilt"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(round " + std::to_string(best_round) + ")"), std::string::npos) << r.out;
    ASSERT_TRUE(fs::exists(best));
    EXPECT_EQ(checkpoint_standing(best.string()).round, best_round);
    EXPECT_EQ(slurp(best), last_bytes);
    EXPECT_FALSE(fs::exists(last.string() + ".tmp-0123456789ab"));
  }
}

}  // namespace
}  // namespace zscrgan
