// Helpers for the safetensors tests: a temporary folder removed on scope exit, raw file I/O for
// hand-built inputs, and the message of an expected zscrgan::Error.
#ifndef ZSCRGAN_TESTS_SAFETENSORS_TEST_UTIL_H
#define ZSCRGAN_TESTS_SAFETENSORS_TEST_UTIL_H

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <system_error>

#include "zscrgan/error.h"

namespace safetensors_test {

class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (std::filesystem::temp_directory_path() / "zscrgan-st-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs f, expecting a zscrgan::Error; returns its message, or "<no error>" when none came.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const zscrgan::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace safetensors_test

#endif  // ZSCRGAN_TESTS_SAFETENSORS_TEST_UTIL_H
