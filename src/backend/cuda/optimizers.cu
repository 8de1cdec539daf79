// Optimizer updates over a network's flat parameter range: one pass reads the parameters,
// gradients and state once and writes parameters and state once, with the critic's clip fused
// into RMSProp. The per-element arithmetic is the shared rmsprop_tf1_update / adam_tf1_update.
// When every pointer is 16-byte aligned the body moves float4s (one 128-bit load per array per
// thread), the remainder goes element by element.
#include <algorithm>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "device_common.cuh"

namespace zscrgan::cuda_detail {
namespace {

__device__ __forceinline__ size_t global_thread() {
  return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_threads() {
  return static_cast<size_t>(gridDim.x) * blockDim.x;
}

__global__ void rmsprop_update_kernel(float* __restrict__ p, const float* __restrict__ g,
                                      float* __restrict__ ms, size_t n, size_t n_vec,
                                      RmsPropHyper h) {
  float4* p4 = reinterpret_cast<float4*>(p);
  const float4* g4 = reinterpret_cast<const float4*>(g);
  float4* ms4 = reinterpret_cast<float4*>(ms);
  for (size_t i = global_thread(); i < n_vec; i += grid_threads()) {
    float4 pv = p4[i], msv = ms4[i];
    const float4 gv = g4[i];
    rmsprop_tf1_update(&pv.x, gv.x, &msv.x, h);
    rmsprop_tf1_update(&pv.y, gv.y, &msv.y, h);
    rmsprop_tf1_update(&pv.z, gv.z, &msv.z, h);
    rmsprop_tf1_update(&pv.w, gv.w, &msv.w, h);
    p4[i] = pv;
    ms4[i] = msv;
  }
  for (size_t i = 4 * n_vec + global_thread(); i < n; i += grid_threads())
    rmsprop_tf1_update(&p[i], g[i], &ms[i], h);
}

// lr_t comes from the beta powers in device memory, as they stand before this step's advance.
__global__ void adam_update_kernel(float* __restrict__ p, const float* __restrict__ g,
                                   float* __restrict__ m, float* __restrict__ v, size_t n,
                                   size_t n_vec, const float* beta_powers, AdamHyper h) {
  const float lr_t = adam_tf1_lr_t(h, beta_powers[0], beta_powers[1]);
  float4* p4 = reinterpret_cast<float4*>(p);
  const float4* g4 = reinterpret_cast<const float4*>(g);
  float4* m4 = reinterpret_cast<float4*>(m);
  float4* v4 = reinterpret_cast<float4*>(v);
  for (size_t i = global_thread(); i < n_vec; i += grid_threads()) {
    float4 pv = p4[i], mv = m4[i], vv = v4[i];
    const float4 gv = g4[i];
    adam_tf1_update(&pv.x, gv.x, &mv.x, &vv.x, lr_t, h);
    adam_tf1_update(&pv.y, gv.y, &mv.y, &vv.y, lr_t, h);
    adam_tf1_update(&pv.z, gv.z, &mv.z, &vv.z, lr_t, h);
    adam_tf1_update(&pv.w, gv.w, &mv.w, &vv.w, lr_t, h);
    p4[i] = pv;
    m4[i] = mv;
    v4[i] = vv;
  }
  for (size_t i = 4 * n_vec + global_thread(); i < n; i += grid_threads())
    adam_tf1_update(&p[i], g[i], &m[i], &v[i], lr_t, h);
}

// After every block of the update has read the powers: a separate launch on the same stream
// is the ordering guarantee (no block of the update can still be running).
__global__ void adam_advance_powers_kernel(float* beta_powers, float beta1, float beta2) {
  beta_powers[0] *= beta1;
  beta_powers[1] *= beta2;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

int update_blocks(const KernelContext& ctx, size_t work_items) {
  const size_t want = ceil_div(std::max<size_t>(work_items, 1), size_t(kBlockThreads));
  return static_cast<int>(std::min<size_t>(want, ctx.max_blocks));
}

}  // namespace

void launch_rmsprop_update(const KernelContext& ctx, float* params, const float* grads,
                           float* mean_square, size_t n, const RmsPropHyper& h) {
  if (n == 0) return;
  const bool vec = aligned16(params) && aligned16(grads) && aligned16(mean_square);
  const size_t n_vec = vec ? n / 4 : 0;
  const int blocks = update_blocks(ctx, std::max(n_vec, n - 4 * n_vec));
  rmsprop_update_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(params, grads, mean_square, n,
                                                                  n_vec, h);
  ZS_LAUNCH_CHECK();
}

void launch_adam_update(const KernelContext& ctx, float* params, const float* grads, float* m,
                        float* v, size_t n, float* beta_powers, const AdamHyper& h) {
  if (n > 0) {
    const bool vec = aligned16(params) && aligned16(grads) && aligned16(m) && aligned16(v);
    const size_t n_vec = vec ? n / 4 : 0;
    const int blocks = update_blocks(ctx, std::max(n_vec, n - 4 * n_vec));
    adam_update_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(params, grads, m, v, n, n_vec,
                                                                 beta_powers, h);
    ZS_LAUNCH_CHECK();
  }
  if (h.advance_beta_powers) {
    adam_advance_powers_kernel<<<1, 1, 0, ctx.stream>>>(beta_powers, h.beta1, h.beta2);
    ZS_LAUNCH_CHECK();
  }
}

}  // namespace zscrgan::cuda_detail
