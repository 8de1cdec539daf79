// The CPU backend's loops, compiled once per x86-64 ISA level (internal to backend/cpu).
//
// cpu_backend.cc is built three times (CMakeLists.txt: zscrgan_backend_cpu_<level>), each time
// with ZSCRGAN_CPU_ISA_VARIANT naming the level, into a namespace of its own:
//   0 baseline: x86-64 (SSE2), what the whole project is compiled for
//   1 avx2:     AVX2 + FMA (the vector part of x86-64-v3)
//   2 avx512:   AVX-512 F, CD, BW, DQ, VL (the vector part of x86-64-v4), 512-bit vectors
// cpu_isa.cc picks one at run time (make_cpu_backend()).
//
// Why target pragmas instead of -march per object: functions with vague linkage (inline
// functions of shared headers, template instantiations such as std:: or core/error.h's fail)
// get one copy per object, and the linker keeps any one of them for the whole program, so an
// AVX-512 copy could end up called from the baseline path (SIGILL on older CPUs). With the
// pragma only the functions defined between ZSCRGAN_CPU_ISA_BEGIN and ZSCRGAN_CPU_ISA_END (all
// of internal linkage, or in the level's namespace) are compiled for the level; code from
// headers is compiled for baseline and inlined into them (a baseline callee may be inlined
// into a caller with more features; elementwise.h forces it on the host, so its arithmetic,
// FMA contraction included, is always the caller's).
#ifndef ZSCRGAN_CPU_ISA_H
#define ZSCRGAN_CPU_ISA_H

#include <memory>

#include "backend/backend.h"

namespace zscrgan {
namespace cpu_isa_baseline {
std::unique_ptr<Backend> make_cpu_backend();
}
namespace cpu_isa_avx2 {
std::unique_ptr<Backend> make_cpu_backend();
}
namespace cpu_isa_avx512 {
std::unique_ptr<Backend> make_cpu_backend();
}
}  // namespace zscrgan

#if defined(ZSCRGAN_CPU_ISA_VARIANT)
#if ZSCRGAN_CPU_ISA_VARIANT == 0
#define ZSCRGAN_CPU_ISA_NS cpu_isa_baseline
#define ZSCRGAN_CPU_ISA_NAME "baseline"
#elif ZSCRGAN_CPU_ISA_VARIANT == 1
#define ZSCRGAN_CPU_ISA_NS cpu_isa_avx2
#define ZSCRGAN_CPU_ISA_NAME "avx2"
#define ZSCRGAN_CPU_ISA_TARGET "avx2,fma"
#elif ZSCRGAN_CPU_ISA_VARIANT == 2
#define ZSCRGAN_CPU_ISA_NS cpu_isa_avx512
#define ZSCRGAN_CPU_ISA_NAME "avx512"
#if defined(__clang__)
#define ZSCRGAN_CPU_ISA_TARGET "avx2,fma,avx512f,avx512cd,avx512bw,avx512dq,avx512vl"
#else
#define ZSCRGAN_CPU_ISA_TARGET \
  "avx2,fma,avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prefer-vector-width=512"
#endif
#else
#error "ZSCRGAN_CPU_ISA_VARIANT must be 0 (baseline), 1 (avx2) or 2 (avx512)"
#endif

#define ZSCRGAN_CPU_ISA_PRAGMA(x) _Pragma(#x)
#if !defined(ZSCRGAN_CPU_ISA_TARGET)
#define ZSCRGAN_CPU_ISA_TARGET_PUSH
#define ZSCRGAN_CPU_ISA_TARGET_POP
#elif defined(__clang__)
#define ZSCRGAN_CPU_ISA_TARGET_PUSH_(t) \
  ZSCRGAN_CPU_ISA_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define ZSCRGAN_CPU_ISA_TARGET_PUSH ZSCRGAN_CPU_ISA_TARGET_PUSH_(ZSCRGAN_CPU_ISA_TARGET)
#define ZSCRGAN_CPU_ISA_TARGET_POP _Pragma("clang attribute pop")
#else
#define ZSCRGAN_CPU_ISA_TARGET_PUSH_(t) _Pragma("GCC push_options") ZSCRGAN_CPU_ISA_PRAGMA(GCC target(t))
#define ZSCRGAN_CPU_ISA_TARGET_PUSH ZSCRGAN_CPU_ISA_TARGET_PUSH_(ZSCRGAN_CPU_ISA_TARGET)
#define ZSCRGAN_CPU_ISA_TARGET_POP _Pragma("GCC pop_options")
#endif

// Opens the level's namespace (inside namespace zscrgan) and compiles what follows for it;
// every #include must come before. Each pragma ends its macro: GCC 14 drops the tokens that
// follow a target pragma in the same expansion (the namespace's opening brace, here).
#define ZSCRGAN_CPU_ISA_BEGIN namespace ZSCRGAN_CPU_ISA_NS { ZSCRGAN_CPU_ISA_TARGET_PUSH
#define ZSCRGAN_CPU_ISA_END } ZSCRGAN_CPU_ISA_TARGET_POP
#endif  // ZSCRGAN_CPU_ISA_VARIANT

#endif  // ZSCRGAN_CPU_ISA_H
