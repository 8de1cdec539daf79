// Crash safety of write_safetensors_atomic: a child process rewrites a 64 MiB file over and over
// and is killed with SIGKILL at moments drawn from a fixed seed; after every kill the file must
// load and hold one complete version, never a mix or a prefix. (A killed process loses nothing
// that reached the page cache, so this checks atomicity against process crashes; the fsync of
// the file before the rename and of the folder after it is what carries the same guarantee
// over to power loss, which a test cannot simulate.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data_test_util.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace {

constexpr int64_t kElements = int64_t{8} << 20;  // 8 Mi int64 = 64 MiB

int64_t element(int64_t version, int64_t k) { return version * kElements + k; }

zscrgan::SafeTensorsFile version_file(int64_t version, std::vector<int64_t>& scratch) {
  for (int64_t k = 0; k < kElements; ++k) scratch[k] = element(version, k);
  zscrgan::SafeTensorsFile f;
  f.metadata["version"] = std::to_string(version);
  f.tensors.push_back(zscrgan::make_i64_tensor("data", {kElements}, scratch.data()));
  const int64_t v = version;
  f.tensors.push_back(zscrgan::make_i64_tensor("version", {}, &v));
  return f;
}

// Loads the file and returns the version it holds, failing the test unless it is complete and
// consistent.
int64_t loaded_version(const std::string& path) {
  const zscrgan::SafeTensorsFile f = zscrgan::read_safetensors(path);
  const int64_t version = std::stoll(f.metadata.at("version"));
  EXPECT_EQ(f.i64("version", {}), std::vector<int64_t>{version});
  const std::vector<int64_t> data = f.i64("data", {kElements});
  int64_t wrong = 0;
  for (int64_t k = 0; k < kElements; ++k) wrong += data[k] != element(version, k);
  EXPECT_EQ(wrong, 0) << "version " << version << " has " << wrong << " wrong elements";
  return version;
}

TEST(CheckpointKill, FileAlwaysHoldsOneCompleteVersion) {
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("last.safetensors");
  std::vector<int64_t> scratch(kElements);

  const auto t0 = std::chrono::steady_clock::now();
  zscrgan::write_safetensors_atomic(path, version_file(0, scratch));
  const double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(loaded_version(path), 0);

  constexpr int kKills = 16;
  constexpr int64_t kVersionsPerChild = 1000000;
  std::mt19937 rng(20240611);
  // Kills land anywhere from before the first write starts to a few writes in.
  std::uniform_real_distribution<double> delay_in_writes(0.0, 3.0);
  int64_t last = 0;
  int mid_write_kills = 0, advanced = 0;
  for (int i = 0; i < kKills; ++i) {
    const double delay_s = delay_in_writes(rng) * write_s;
    const int64_t first_version = (i + 1) * kVersionsPerChild;
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      try {
        for (int64_t v = first_version;; ++v) zscrgan::write_safetensors_atomic(path, version_file(v, scratch));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "writer: %s\n", e.what());
      }
      ::_exit(3);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer exited on its own (status " << status << ")";

    if (zscrgan_test::temporaries(path) > 0) ++mid_write_kills;
    const int64_t v = loaded_version(path);
    if (::testing::Test::HasFailure()) return;
    // Either the version from before this child, or one the child finished.
    EXPECT_TRUE(v == last || (v >= first_version && v < first_version + kVersionsPerChild))
        << "kill " << i << ": version " << v << " after " << last;
    if (v != last) ++advanced;
    last = v;
  }
  std::printf("one write: %.3f s; %d kills, %d mid-write (temporary left), %d after new versions\n",
              write_s, kKills, mid_write_kills, advanced);
  EXPECT_GT(mid_write_kills, 0) << "no kill interrupted a write: the test checked nothing";
  EXPECT_GT(advanced, 0) << "no writer ever finished a version: the test checked nothing";

  // Each killed writer's temporary had its own name; a later write removes every one of them.
  std::ofstream(path + ".tmp-0123456789ab") << "left by a killed writer";
  zscrgan::write_safetensors_atomic(path, version_file(1, scratch));
  EXPECT_EQ(loaded_version(path), 1);
  EXPECT_EQ(zscrgan_test::temporaries(path), 0);
}

}  // namespace
