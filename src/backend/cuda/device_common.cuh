// Device-side building blocks shared by the kernel families: strided matrix views, launch
// geometry and deterministic block reductions. Included by the .cu files only.
#ifndef ZSCRGAN_KERNELS_DEVICE_COMMON_CUH
#define ZSCRGAN_KERNELS_DEVICE_COMMON_CUH

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "cuda_kernels.h"
#include "core/tensor.h"

namespace zscrgan::cuda_detail {

// A row-major view as kernels see it: Tensor without its host-only members.
struct Mat {
  float* data;
  int rows;
  int cols;
  int ld;
  __device__ __forceinline__ float& operator()(int r, int c) const {
    return data[static_cast<size_t>(r) * ld + c];
  }
  __device__ __forceinline__ bool empty() const { return data == nullptr; }
};

inline Mat view(const Tensor& t) { return Mat{t.data, t.rows, t.cols, t.ld}; }

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

constexpr int kBlockThreads = 256;  // every 2-D and 1-D elementwise launch
constexpr int kWarp = 32;

// Launch geometry for a rows x cols grid-stride loop: blockDim.x covers consecutive columns
// (coalesced, a multiple of 32 so that warps are whole), blockDim.y the remaining threads of a
// 256-thread block spread over rows. At most max_blocks blocks.
struct Launch2d {
  dim3 grid;
  dim3 block;
};
inline Launch2d launch_2d(int rows, int cols, int max_blocks) {
  const int bx = std::min(kBlockThreads, std::max(kWarp, ceil_div(cols, kWarp) * kWarp));
  const int by = kBlockThreads / bx;
  max_blocks = std::max(1, max_blocks);
  const int gx = std::min(ceil_div(cols, bx), max_blocks);
  const int gy = std::min({ceil_div(rows, by), std::max(1, max_blocks / gx), 65535});
  return Launch2d{dim3(gx, gy), dim3(bx, by)};
}

// Grid-stride loops over a launch_2d grid.
#define ZS_FOR_ROWS(r, rows) \
  for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < (rows); r += gridDim.y * blockDim.y)
#define ZS_FOR_COLS(c, cols) \
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < (cols); c += gridDim.x * blockDim.x)

__device__ __forceinline__ int flat_thread() { return threadIdx.y * blockDim.x + threadIdx.x; }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  // Butterfly: every lane ends with the same sum, added in the same order on every run.
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of one value per thread over the whole block (any shape, a multiple of 32 threads, at
// most 1024). Deterministic: fixed lanes, fixed warps, fixed order. Every thread gets the sum.
// `shared` holds 33 floats; the trailing barrier lets the caller reuse it at once.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int tid = flat_thread();
  const int lane = tid % kWarp, warp = tid / kWarp;
  const int warps = (blockDim.x * blockDim.y * blockDim.z) / kWarp;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? shared[lane] : 0.f;
    w = warp_sum(w);
    if (lane == 0) shared[32] = w;
  }
  __syncthreads();
  const float total = shared[32];
  __syncthreads();
  return total;
}

// Records a broken invariant (see KernelFaultRecord in cuda_kernels.h); the first fault wins.
// The caller then skips the element instead of reading or writing out of bounds.
__device__ __forceinline__ void report_fault(KernelFaultRecord* record, int fault, long long value,
                                             long long limit, long long where) {
  if (atomicCAS(&record->fault, kNoFault, fault) == kNoFault) {
    record->value = value;
    record->limit = limit;
    record->where = where;
  }
}

}  // namespace zscrgan::cuda_detail

#endif  // ZSCRGAN_KERNELS_DEVICE_COMMON_CUH
