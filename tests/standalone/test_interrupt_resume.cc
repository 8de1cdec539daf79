// The bar for durable runs, end to end through the program: a CPU run stopped by SIGINT, or
// killed with SIGKILL at random moments, inside checkpoint writes or between the writes of
// `last` and `best`, and resumed with --resume, finishes with exactly the metrics, `last` and
// `best` of an uninterrupted run (timings and the output folder aside).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "train/checkpoint.h"
#include "formats/safetensors.h"

namespace fs = std::filesystem;

namespace {

// In a forked child: becomes the program with these arguments (127 if that fails).
[[noreturn]] void exec_cli(const std::vector<std::string>& args) {
  static std::string cli = ZSCRGAN_CLI_PATH;
  std::vector<std::string> copy = args;
  std::vector<char*> argv{cli.data()};
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(cli.c_str(), argv.data());
  _exit(127);
}

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
      exec_cli(args);
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

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A checkpoint with what legitimately differs between two runs taken out: the wall-clock time
// in the run state, the output folder in the config, and the hash that covers both.
struct CheckpointContent {
  std::map<std::string, std::vector<uint8_t>> tensors;
  nlohmann::json run, config;
  bool operator==(const CheckpointContent& o) const {
    return tensors == o.tensors && run == o.run && config == o.config;
  }
};

CheckpointContent content_of(const fs::path& p) {
  const zscrgan::SafeTensorsFile f = zscrgan::read_safetensors(p.string());
  CheckpointContent c;
  for (const auto& t : f.tensors) c.tensors[t.name] = t.bytes;
  c.run = nlohmann::json::parse(f.metadata.at("run"));
  c.run.erase("elapsed_s");
  c.config = nlohmann::json::parse(f.metadata.at("config"));
  c.config.erase("output_dir");
  return c;
}

// After any kill: if `last` records that its round was a new best, `best` is either that very
// state or (until the resume rebuilds it) missing or older; returns whether it was the latter.
bool best_lags_behind_last(const fs::path& run_dir) {
  const fs::path last = run_dir / "checkpoints" / "last.safetensors";
  const fs::path best = run_dir / "checkpoints" / "best.safetensors";
  if (!fs::exists(last)) return false;
  const zscrgan::CheckpointStanding s = zscrgan::checkpoint_standing(last.string());
  if (s.best_round != s.round || s.in_round) return false;
  return !fs::exists(best) || zscrgan::checkpoint_standing(best.string()).round != s.best_round;
}

int temporaries_in(const fs::path& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) n += e.path().filename().string().find(".tmp") != std::string::npos;
  return n;
}

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
  EXPECT_TRUE(content_of(run_dir / "checkpoints" / "last.safetensors") ==
              content_of(ref / "checkpoints" / "last.safetensors"));
  EXPECT_TRUE(content_of(run_dir / "checkpoints" / "best.safetensors") ==
              content_of(ref / "checkpoints" / "best.safetensors"));
}

// Where a traced run is killed: at the `nth` write into a checkpoint's temporary file (inside a
// write), or when the program renames the temporary of `target` into place (the write is
// complete but not yet the file: for best.safetensors, the moment between the two writes).
struct KillPoint {
  enum Kind { kWrite, kRename } kind;
  int nth = 1;
  std::string target;
};

#if defined(__x86_64__)
// Runs the program under ptrace with a seccomp filter that stops it only at write and rename
// system calls, and kills it with SIGKILL at the kill point: the kill lands exactly there, however
// loaded the machine is. Returns the exit code (128 + 9 when killed).
int run_killed_at(const std::vector<std::string>& args, const fs::path& log, const KillPoint& at) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);  // the tracer sets its options
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rename, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_renameat, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_renameat2, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      _exit(126);
    exec_cli(args);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ptrace(PTRACE_SETOPTIONS, pid, nullptr,
         PTRACE_O_TRACESECCOMP | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL);
  ptrace(PTRACE_CONT, pid, nullptr, nullptr);

  auto tracee_string = [&](unsigned long long address) {
    std::ifstream mem("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
    mem.seekg(static_cast<std::streamoff>(address));
    std::string s;
    std::getline(mem, s, '\0');
    return s;
  };
  int writes = 0;
  bool killed = false;
  for (;;) {
    const pid_t t = waitpid(-1, &status, __WALL);
    if (t < 0) break;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (t == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      continue;
    }
    if (!WIFSTOPPED(status)) continue;
    const int sig = WSTOPSIG(status), event = status >> 16;
    if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP && !killed) {
      user_regs_struct r{};
      ptrace(PTRACE_GETREGS, t, nullptr, &r);
      bool hit = false;
      if (r.orig_rax == __NR_write && at.kind == KillPoint::kWrite) {
        char target[4096] = {};
        const std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(r.rdi);
        const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
        if (n > 0 && std::string(target, n).find("safetensors.tmp-") != std::string::npos) hit = ++writes == at.nth;
      } else if (at.kind == KillPoint::kRename && r.orig_rax != __NR_write) {
        const unsigned long long from = r.orig_rax == __NR_rename ? r.rdi : r.rsi;
        const std::string name = fs::path(tracee_string(from)).filename().string();
        hit = name.rfind(at.target + ".tmp-", 0) == 0 && ++writes == at.nth;
      }
      if (hit) {
        kill(pid, SIGKILL);
        killed = true;
        continue;  // the tracee dies at this stop
      }
      ptrace(PTRACE_CONT, t, nullptr, nullptr);
    } else if (sig == SIGTRAP || sig == SIGSTOP) {
      ptrace(PTRACE_CONT, t, nullptr, nullptr);  // clone events, new threads' first stop
    } else {
      ptrace(PTRACE_CONT, t, nullptr, sig);
    }
  }
  return -1;
}
#endif

TEST_F(InterruptTest, SigkillInsideAndBetweenCheckpointWritesThenResumeEqualsUninterrupted) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the ptrace kill points are written for x86-64";
#else
  const fs::path ref = root_ / "reference", run_dir = root_ / "killed";
  const fs::path ckpt = run_dir / "checkpoints";
  const std::vector<std::string> rounds = {"--set", "rounds=12"};
  auto train12 = [&](const fs::path& out) { return plus(train(out), rounds); };
  ASSERT_EQ(run(train12(ref), root_ / "ref.log"), 0) << slurp(root_ / "ref.log");
  const auto expected = metrics(ref);

  // Round 1 is always a new best: its best write is hit first. Then kills inside the writes of
  // last and best (mid-data and just before the rename), and at random moments.
  const std::vector<KillPoint> plan = {
      {KillPoint::kRename, 1, "best.safetensors"}, {KillPoint::kWrite, 3, ""},
      {KillPoint::kRename, 2, "last.safetensors"}, {KillPoint::kWrite, 1, ""},
      {KillPoint::kRename, 1, "best.safetensors"}, {KillPoint::kWrite, 8, ""},
      {KillPoint::kRename, 1, "last.safetensors"}, {KillPoint::kWrite, 5, ""}};
  std::mt19937 rng(77);
  int inside = 0, between = 0, kills = 0;
  bool started = false, finished = false;
  for (size_t i = 0; i < plan.size() + 4 && !finished; ++i) {
    const std::vector<std::string> args =
        started ? std::vector<std::string>{"--resume", run_dir.string()} : train12(run_dir);
    int code;
    if (i >= 4 && (i % 2 == 1 || i >= plan.size())) {  // a random moment
      const pid_t pid = start(args, root_ / "k.log");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 500)(rng)));
      kill(pid, SIGKILL);
      code = wait_exit(pid);
    } else {
      code = run_killed_at(args, root_ / "k.log", plan[i]);
    }
    if (code == 0) {
      finished = true;
      break;
    }
    ASSERT_EQ(code, 128 + SIGKILL) << slurp(root_ / "k.log");
    ++kills;
    inside += temporaries_in(ckpt) > 0;
    between += best_lags_behind_last(run_dir);
    started = fs::exists(ckpt / "last.safetensors");
  }
  if (!finished) {
    const std::vector<std::string> args =
        started ? std::vector<std::string>{"--resume", run_dir.string()} : train12(run_dir);
    ASSERT_EQ(run(args, root_ / "final.log"), 0) << slurp(root_ / "final.log");
  }
  std::printf("%d kills: %d inside a checkpoint write (temporary left), %d between last and best\n",
              kills, inside, between);
  EXPECT_GE(inside, 3) << "too few kills landed inside a checkpoint write";
  EXPECT_GE(between, 1) << "no kill landed between the last and best writes";
  EXPECT_EQ(metrics(run_dir), expected) << "after " << kills << " kills";
  EXPECT_TRUE(content_of(ckpt / "last.safetensors") == content_of(ref / "checkpoints" / "last.safetensors"));
  EXPECT_TRUE(content_of(ckpt / "best.safetensors") == content_of(ref / "checkpoints" / "best.safetensors"));
  EXPECT_EQ(temporaries_in(ckpt), 0);
#endif
}

}  // namespace
