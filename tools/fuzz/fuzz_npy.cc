// libFuzzer harness for the .npy readers: the whole-file readers of features and labels and the
// streaming row reader get the same bytes as a file. Each must return data that matches the
// header or throw zscrgan::Error with a message that keeps the one-line rule (message_rule.h);
// any other exception, a crash or a sanitizer report is a finding. Built and run by
// tools/fuzz/run_fuzz.sh npy.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>

#include "message_rule.h"
#include "formats/npy.h"
#include "formats/npy_stream.h"

namespace {

const std::string& input_path() {
  static const std::string p = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/fuzz_npy_" + std::to_string(::getpid()) + ".npy";
  }();
  return p;
}

template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const zscrgan::Error& e) {
    fuzz::check_message("fuzz_npy", e.what(), input_path());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream out(input_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  expect_clean([&] {
    const zscrgan::HostMatrix m = zscrgan::read_npy_matrix(input_path());
    if (m.data.size() != static_cast<size_t>(m.rows * m.cols)) fuzz::finding("fuzz_npy", "matrix size mismatch");
    if (static_cast<size_t>(m.rows * m.cols) * 4 > size) fuzz::finding("fuzz_npy", "more values than the input holds");
  });
  expect_clean([&] {
    const std::vector<int64_t> l = zscrgan::read_npy_labels(input_path());
    if (l.size() * 4 > size) fuzz::finding("fuzz_npy", "more labels than the input holds");
  });
  expect_clean([&] {
    zscrgan::NpyRowReader r(input_path());
    if (r.rows() > 0 && r.cols() > 0 && r.cols() < (1 << 16)) {
      std::vector<float> row(static_cast<size_t>(r.cols()));
      r.read_rows(r.rows() - 1, 1, row.data());
    }
  });
  return 0;
}
