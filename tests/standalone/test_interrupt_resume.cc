// The bar for durable runs, end to end through the program: a CPU run stopped by SIGINT, or
// killed with SIGKILL at random moments, and resumed with --resume, finishes with exactly the
// metrics of an uninterrupted run (timings aside).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

const char* kConfig = R"({"dataset": "synthetic", "batch_size": 16, "gf_dim": 64, "df_dim": 32,
  "embed_dim": 16, "z_dim": 8, "rounds": 30, "e_step_iters": 100, "m_step_iters": 100, "top_k": 10,
  "device": "cpu", "seed": 3, "synthetic": {"seen_classes": 10, "unseen_classes": 5,
  "images_per_class": 20, "texts_per_class": 2, "text_dim": 16, "image_dim": 24, "latent_dim": 4}})";

class InterruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("zscrgan_interrupt_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    std::ofstream(root_ / "config.json") << kConfig;
  }
  void TearDown() override { fs::remove_all(root_); }

  // Starts the program with stdout and stderr to `log`; returns its pid.
  pid_t start(const std::vector<std::string>& args, const fs::path& log) {
    const pid_t pid = fork();
    if (pid == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      static std::string cli = ZSCRGAN_CLI_PATH;
      argv.push_back(cli.data());
      std::vector<std::string> copy = args;
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(cli.c_str(), argv.data());
      _exit(127);
    }
    return pid;
  }
  int wait_exit(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int run(const std::vector<std::string>& args, const fs::path& log) { return wait_exit(start(args, log)); }
  std::vector<std::string> train(const fs::path& out) {
    return {"--config", (root_ / "config.json").string(), "--set", "output_dir=" + out.string()};
  }
  // metrics.jsonl without the timing fields.
  static std::vector<nlohmann::json> metrics(const fs::path& run_dir) {
    std::ifstream in(run_dir / "metrics.jsonl");
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      j.erase("seconds");
      j.erase("train_seconds");
      out.push_back(j);
    }
    return out;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  fs::path root_;
};

TEST_F(InterruptTest, SigintThenResumeEqualsUninterrupted) {
  const fs::path ref = root_ / "reference", run_dir = root_ / "interrupted";
  ASSERT_EQ(run(train(ref), root_ / "ref.log"), 0) << slurp(root_ / "ref.log");
  const auto expected = metrics(ref);
  ASSERT_EQ(expected.size(), 30u);

  const pid_t pid = start(train(run_dir), root_ / "a.log");
  // Wait for a few rounds, then interrupt in the middle of whatever step is running.
  for (int i = 0; i < 2000 && metrics(run_dir).size() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  const int code = wait_exit(pid);
  const std::string log = slurp(root_ / "a.log");
  if (code == 0) GTEST_SKIP() << "the run finished before the signal arrived";
  EXPECT_EQ(code, 130) << log;
  EXPECT_NE(log.find("resume with: zscrgan_cuda"), std::string::npos) << log;
  ASSERT_TRUE(fs::exists(run_dir / "checkpoints" / "last.safetensors"));

  ASSERT_EQ(run({"--resume", run_dir.string()}, root_ / "b.log"), 0) << slurp(root_ / "b.log");
  EXPECT_EQ(metrics(run_dir), expected);
}

TEST_F(InterruptTest, SigkillAtRandomMomentsThenResumeEqualsUninterrupted) {
  const fs::path ref = root_ / "reference", run_dir = root_ / "killed";
  ASSERT_EQ(run(train(ref), root_ / "ref.log"), 0) << slurp(root_ / "ref.log");
  const auto expected = metrics(ref);
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> delay_ms(50, 600);
  bool started = false;
  int kills = 0;
  for (int attempt = 0; attempt < 12; ++attempt) {
    const std::vector<std::string> args =
        started ? std::vector<std::string>{"--resume", run_dir.string()} : train(run_dir);
    const pid_t pid = start(args, root_ / "k.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    kill(pid, SIGKILL);
    const int code = wait_exit(pid);
    if (code == 0) break;  // finished before the kill
    ++kills;
    started = fs::exists(run_dir / "checkpoints" / "last.safetensors");
  }
  // Finish the run.
  const std::vector<std::string> args =
      started ? std::vector<std::string>{"--resume", run_dir.string()} : train(run_dir);
  ASSERT_EQ(run(args, root_ / "final.log"), 0) << slurp(root_ / "final.log");
  EXPECT_GT(kills, 0);
  EXPECT_EQ(metrics(run_dir), expected) << "after " << kills << " kills";
}

}  // namespace
