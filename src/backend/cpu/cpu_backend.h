// The CPU backend: the reference implementation of every Backend call, GEMMs on oneDNN.
#ifndef ZSCRGAN_CPU_BACKEND_H
#define ZSCRGAN_CPU_BACKEND_H

#include <cstddef>
#include <memory>

#include "backend/backend.h"

namespace zscrgan {

// The instruction set the backend's own loops (element-wise ops, optimizers, reductions,
// noise) are compiled for; oneDNN picks its GEMM kernels by itself. Each level is a separate
// compilation of the same loops over backend/elementwise.h.
enum class CpuIsa { Baseline, Avx2, Avx512 };
constexpr CpuIsa kCpuIsas[] = {CpuIsa::Baseline, CpuIsa::Avx2, CpuIsa::Avx512};

// "baseline" (x86-64, SSE2), "avx2" (AVX2 + FMA), "avx512" (AVX-512 F/CD/BW/DQ/VL).
const char* cpu_isa_name(CpuIsa isa);
// Whether this CPU runs the level.
bool cpu_isa_supported(CpuIsa isa);
// The level make_cpu_backend() uses: the environment variable ZSCRGAN_CPU_ISA when set
// (baseline, avx2 or avx512; an unknown value or a level this CPU lacks is an Error naming
// it), otherwise the best level this CPU supports.
CpuIsa cpu_isa_selected();

// weight_grad_rmsprop_update and weight_grad_adam_update form the product and apply the
// update in one blocked pass from this many parameters of the weight; smaller weights take
// the GEMM, then the update. A small model's weights and optimizer state stay in the caches
// from one step to the next, and there the two calls are faster (bench/README.md, "Which
// weights take the blocked path").
constexpr size_t kCpuBlockedUpdateMinParams = size_t(1) << 20;

std::unique_ptr<Backend> make_cpu_backend();  // at cpu_isa_selected()
std::unique_ptr<Backend> make_cpu_backend(CpuIsa isa);  // an Error when the CPU lacks the level

}  // namespace zscrgan

#endif  // ZSCRGAN_CPU_BACKEND_H
