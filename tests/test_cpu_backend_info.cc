// The CPU backend names the library, ISA and threads its GEMMs run on, and says so in one line
// when they would run on oneDNN's generic kernels on a CPU that has AVX2 or AVX-512.
#include <gtest/gtest.h>

#include <omp.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.h"
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "onednn_matmul.h"

namespace zscrgan {
namespace {

TEST(CpuBackendInfo, DescriptionNamesLibraryIsaAndThreads) {
  testing::internal::CaptureStderr();
  const auto be = make_cpu_backend();
  const std::string err = testing::internal::GetCapturedStderr();
  const std::string d = be->description();
  const dnnl_version_t* v = dnnl_version();
  const std::string version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                              std::to_string(v->patch);
  EXPECT_NE(d.find("oneDNN " + version), std::string::npos) << d;
  EXPECT_NE(d.find(std::to_string(omp_get_max_threads()) + " threads"), std::string::npos) << d;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx2) {
    EXPECT_EQ(d.find("sse41"), std::string::npos) << d;
    EXPECT_EQ(err.find("generic kernels"), std::string::npos) << err;
  }
}

// Caps oneDNN at SSE4.1, as ONEDNN_MAX_CPU_ISA=SSE41 would. oneDNN fixes its ISA at its first
// kernel, so this works in a process of its own (ctest runs each test alone).
TEST(CpuBackendInfo, GenericKernelsOnAnAvx2CpuAreAnnouncedInOneLine) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2: nothing to warn about";
  if (dnnl_set_max_cpu_isa(dnnl_cpu_isa_sse41) != dnnl_success)
    GTEST_SKIP() << "oneDNN already dispatched in this process; run this test alone";
  testing::internal::CaptureStderr();
  const auto be = make_cpu_backend();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(be->description().find("sse41"), std::string::npos) << be->description();
  EXPECT_NE(err.find("generic kernels"), std::string::npos) << err;
  EXPECT_NE(err.find("AVX"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << "one line expected: " << err;
}

// Sets ZSCRGAN_CPU_ISA for one scope, restoring what was there.
class ScopedCpuIsaEnv {
 public:
  explicit ScopedCpuIsaEnv(const char* value) {
    const char* old = std::getenv("ZSCRGAN_CPU_ISA");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("ZSCRGAN_CPU_ISA", value, 1);
  }
  ~ScopedCpuIsaEnv() {
    if (had_) setenv("ZSCRGAN_CPU_ISA", old_.c_str(), 1);
    else unsetenv("ZSCRGAN_CPU_ISA");
  }

 private:
  bool had_ = false;
  std::string old_;
};

std::string error_of(const char* env_value) {
  ScopedCpuIsaEnv env(env_value);
  try {
    make_cpu_backend();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CpuBackendInfo, LoopsRunTheBestLevelThisCpuHasAndSaySo) {
  ScopedCpuIsaEnv env("");
  CpuIsa best = CpuIsa::Baseline;
  for (CpuIsa isa : kCpuIsas)
    if (cpu_isa_supported(isa)) best = isa;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    EXPECT_EQ(best, CpuIsa::Avx512);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    EXPECT_EQ(best, CpuIsa::Avx2);
  EXPECT_EQ(cpu_isa_selected(), best);
  testing::internal::CaptureStderr();
  const std::string d = make_cpu_backend()->description();
  testing::internal::GetCapturedStderr();
  EXPECT_NE(d.find(std::string("loops ") + cpu_isa_name(best) + ","), std::string::npos) << d;
}

TEST(CpuBackendInfo, EveryLevelThisCpuHasCanBeChosenByTheEnvironment) {
  for (CpuIsa isa : kCpuIsas) {
    if (!cpu_isa_supported(isa)) continue;
    ScopedCpuIsaEnv env(cpu_isa_name(isa));
    EXPECT_EQ(cpu_isa_selected(), isa);
    testing::internal::CaptureStderr();
    const std::string d = make_cpu_backend()->description();
    testing::internal::GetCapturedStderr();
    EXPECT_NE(d.find(std::string("loops ") + cpu_isa_name(isa) + ","), std::string::npos) << d;
  }
}

TEST(CpuBackendInfo, AnUnknownLevelIsOneLineNamingTheVariable) {
  const std::string e = error_of("avx3");
  EXPECT_NE(e.find("ZSCRGAN_CPU_ISA=avx3"), std::string::npos) << e;
  EXPECT_NE(e.find("baseline, avx2 or avx512"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(CpuBackendInfo, ALevelThisCpuLacksIsOneLineNamingWhatIsMissing) {
  CpuIsa lacking = CpuIsa::Baseline;
  for (CpuIsa isa : kCpuIsas)
    if (!cpu_isa_supported(isa)) lacking = isa;
  if (lacking == CpuIsa::Baseline) GTEST_SKIP() << "this CPU runs every level";
  const std::string e = error_of(cpu_isa_name(lacking));
  EXPECT_NE(e.find(std::string("ZSCRGAN_CPU_ISA=") + cpu_isa_name(lacking) + ": this CPU lacks"),
            std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_THROW(make_cpu_backend(lacking), Error);
}

// bench_round_floor sets each round's census against the others' entry by entry, so a census
// lists its shapes in one order whatever order the calls came in.
TEST(CpuBackendInfo, GemmCensusListsShapesInOneOrderWhateverTheCallOrder) {
  OnednnMatmul& mm = onednn_matmul();
  std::vector<float> a(6 * 4, 0.5f), b(4 * 3, 0.25f), c(6 * 3, 0.f);
  auto call = [&](int m) {
    GemmCall g;
    g.m = m;
    g.n = 3;
    g.k = 4;
    g.a = a.data();
    g.lda = 4;
    g.b = b.data();
    g.ldb = 3;
    g.c = c.data();
    g.ldc = 3;
    mm.run(g, 1);
  };
  auto census_of = [&](const std::vector<int>& order) {
    mm.start_census();
    for (int m : order) call(m);
    std::vector<int> listed;
    for (const OnednnMatmul::ShapeCount& sc : mm.stop_census()) {
      EXPECT_EQ(sc.count, 1) << "m " << sc.shape.m;
      listed.push_back(sc.shape.m);
    }
    return listed;
  };
  const std::vector<int> expected = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(census_of({6, 5, 4, 3, 2, 1}), expected);
  EXPECT_EQ(census_of({3, 1, 6, 2, 5, 4}), expected);
}

}  // namespace
}  // namespace zscrgan
