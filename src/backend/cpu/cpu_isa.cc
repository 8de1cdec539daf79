// Picks the CPU backend's loop level at run time (cpu_isa.h).
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu_backend.h"
#include "cpu_isa.h"

namespace zscrgan {

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Baseline: return "baseline";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "?";
}

namespace {

// What each level's target pragma enables, as __builtin_cpu_supports names it.
const char* cpu_isa_features(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Baseline: return "SSE2";
    case CpuIsa::Avx2: return "AVX2, FMA";
    case CpuIsa::Avx512: return "AVX2, FMA, AVX-512 F/CD/BW/DQ/VL";
  }
  return "?";
}

}  // namespace

bool cpu_isa_supported(CpuIsa isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case CpuIsa::Baseline: return true;
    case CpuIsa::Avx2: return avx2;
    case CpuIsa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
  }
  return false;
}

CpuIsa cpu_isa_selected() {
  CpuIsa best = CpuIsa::Baseline;
  for (CpuIsa isa : kCpuIsas)
    if (cpu_isa_supported(isa)) best = isa;
  const char* env = std::getenv("ZSCRGAN_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  for (CpuIsa isa : kCpuIsas) {
    if (std::strcmp(env, cpu_isa_name(isa)) != 0) continue;
    if (!cpu_isa_supported(isa))
      fail("ZSCRGAN_CPU_ISA=", cpu_isa_name(isa), ": this CPU lacks ", cpu_isa_features(isa),
           " (its best level is ", cpu_isa_name(best), ")");
    return isa;
  }
  fail("ZSCRGAN_CPU_ISA=", std::string(env).substr(0, 40),
       ": unknown level (expected baseline, avx2 or avx512)");
}

std::unique_ptr<Backend> make_cpu_backend(CpuIsa isa) {
  if (!cpu_isa_supported(isa))
    fail("CPU backend: loop level ", cpu_isa_name(isa), " needs ", cpu_isa_features(isa),
         ", which this CPU lacks");
  switch (isa) {
    case CpuIsa::Baseline: return cpu_isa_baseline::make_cpu_backend();
    case CpuIsa::Avx2: return cpu_isa_avx2::make_cpu_backend();
    case CpuIsa::Avx512: return cpu_isa_avx512::make_cpu_backend();
  }
  fail("CPU backend: unknown loop level ", static_cast<int>(isa));
}

std::unique_ptr<Backend> make_cpu_backend() { return make_cpu_backend(cpu_isa_selected()); }

}  // namespace zscrgan
