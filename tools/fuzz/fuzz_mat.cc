// libFuzzer harness for the .mat importers (through matio): the input is a MAT file. Every
// variable it lists is read and converted as the importers convert them, and the xlsa17
// importer runs with the input as res101.mat (first byte even) or att_splits.mat (odd) beside
// a valid partner file. Each must succeed or throw zscrgan::Error with a message that keeps the
// one-line rule (message_rule.h); any other exception, a crash or a sanitizer report is a
// finding. Built and run by tools/fuzz/run_fuzz.sh mat.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <matio.h>

#include "import/import_mat.h"
#include "message_rule.h"
#include "import/importers.h"

namespace fs = std::filesystem;

namespace {

const fs::path& work() {
  static const fs::path p = [] {
    const char* dir = std::getenv("TMPDIR");
    fs::path w = fs::path(dir ? dir : "/tmp") / ("fuzz_mat_" + std::to_string(::getpid()));
    fs::create_directories(w);
    return w;
  }();
  return p;
}

void put(mat_t* m, const char* name, size_t rows, size_t cols, std::vector<double> v) {
  size_t dims[2] = {rows, cols};
  matvar_t* var = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, v.data(), MAT_F_DONT_COPY_DATA);
  Mat_VarWrite(m, var, MAT_COMPRESSION_NONE);
  Mat_VarFree(var);
}

// Valid partners: 6 images of 3 classes, 4-d features, 2-d attributes.
void write_partner(const fs::path& path, bool res101) {
  mat_t* m = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  if (res101) {
    put(m, "features", 4, 6, std::vector<double>(24, 0.5));
    put(m, "labels", 6, 1, {1, 2, 3, 1, 2, 3});
  } else {
    put(m, "att", 2, 3, std::vector<double>(6, 0.25));
    put(m, "trainval_loc", 4, 1, {1, 2, 4, 5});
    put(m, "test_unseen_loc", 2, 1, {3, 6});
  }
  Mat_Close(m);
}

template <typename F>
void expect_clean(F&& f, const std::string& source) {
  try {
    f();
  } catch (const zscrgan::Error& e) {
    // Messages name the input file, or the importer or folder the refusal concerns.
    const std::string m = e.what();
    fuzz::check_message("fuzz_mat", m, m.rfind("xlsa17", 0) == 0 ? "xlsa17" : m.rfind(source, 0) == 0 ? source : work().string());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool as_res101 = size == 0 || (data[0] & 1) == 0;
  const fs::path input = work() / (as_res101 ? "res101.mat" : "att_splits.mat");
  const fs::path partner = work() / (as_res101 ? "att_splits.mat" : "res101.mat");
  {
    std::ofstream out(input, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  write_partner(partner, !as_res101);

  expect_clean([&] {
    const zscrgan::detail::MatFile f(input.string());
    for (const char* name : {"features", "labels", "att", "trainval_loc", "test_unseen_loc", "PredicateMatrix", "pfc_feat"}) {
      if (!f.has(name)) continue;
      expect_clean([&] {
        const zscrgan::detail::MatMatrix v = f.read(name);
        if (v.rows() * v.cols() < (int64_t{1} << 24)) {
          expect_clean([&] { v.all_rows(); }, input.string());
          expect_clean([&] { v.integer_vector(); }, input.string());
        }
      }, input.string());
    }
  }, input.string());

  zscrgan::ImportOptions o;
  o.format = "xlsa17";
  o.input = work().string();
  o.name = "fuzz";
  expect_clean([&] { zscrgan::import_dataset(o); }, input.string());
  return 0;
}
