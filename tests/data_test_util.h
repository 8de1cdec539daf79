// Helpers for the file-format tests: a unique temporary folder removed on scope exit, and
// raw file writing for hand-built inputs.
#ifndef ZSCRGAN_TESTS_DATA_TEST_UTIL_H
#define ZSCRGAN_TESTS_DATA_TEST_UTIL_H

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <regex>
#include <string>

#include "core/error.h"

namespace zscrgan_test {

class ScopedTempDir {
 public:
  ScopedTempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() /
            ("zscrgan-test-" + std::to_string(rd()) + "-" + std::to_string(t % 1000000007) +
             "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The number of temporary siblings of `path` ("<name>.tmp", "<name>.tmp-<suffix>") in its folder.
inline int temporaries(const std::string& path) {
  const std::filesystem::path p(path);
  const std::string prefix = p.filename().string() + ".tmp";
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(p.parent_path(), ec))
    n += e.path().filename().string().rfind(prefix, 0) == 0;
  return n;
}

// Whether all of `text` matches the regular expression (ECMAScript syntax).
inline bool matches(const std::string& text, const std::string& re) {
  return std::regex_match(text, std::regex(re));
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// While alive, files this process writes may not grow past `bytes` (RLIMIT_FSIZE), and the
// SIGXFSZ a write past it raises is ignored, so the write fails with EFBIG instead.
class ScopedFileSizeLimit {
 public:
  explicit ScopedFileSizeLimit(rlim_t bytes) {
    ok_ = ::getrlimit(RLIMIT_FSIZE, &old_limit_) == 0;
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ok_ = ok_ && ::sigaction(SIGXFSZ, &ignore, &old_action_) == 0;
    rlimit small = old_limit_;
    small.rlim_cur = bytes;
    ok_ = ok_ && ::setrlimit(RLIMIT_FSIZE, &small) == 0;
  }
  ~ScopedFileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_limit_);
    ::sigaction(SIGXFSZ, &old_action_, nullptr);
  }
  ScopedFileSizeLimit(const ScopedFileSizeLimit&) = delete;
  ScopedFileSizeLimit& operator=(const ScopedFileSizeLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
  rlimit old_limit_{};
  struct sigaction old_action_ {};
};

// Runs `f`, expects a zscrgan::Error, and returns its message ("" if none was thrown).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const zscrgan::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected zscrgan::Error, nothing was thrown";
  return "";
}

}  // namespace zscrgan_test

#endif  // ZSCRGAN_TESTS_DATA_TEST_UTIL_H
