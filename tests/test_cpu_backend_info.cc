// The CPU backend names the library, ISA and threads its GEMMs run on, and says so in one line
// when they would run on oneDNN's generic kernels on a CPU that has AVX2 or AVX-512.
#include <gtest/gtest.h>

#include <omp.h>

#include <string>

#include "oneapi/dnnl/dnnl.h"
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

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

}  // namespace
}  // namespace zscrgan
