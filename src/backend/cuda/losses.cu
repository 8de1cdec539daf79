// Loss kernels. A forward reduces to a 1x1 device scalar with a deterministic two-stage sum:
// each block adds its share in a fixed order (grid-stride loop, butterfly warp sums, warps in
// order) and stores one partial; a single block then adds the partials in index order. When
// one block suffices it writes the result itself. The block count depends only on the shape,
// so the same inputs give the same bits on every run, eager or replayed.
// A backward reads its upstream gradient from the 1x1 device tensor inside the kernel.
#include <algorithm>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "device_common.cuh"

namespace zscrgan::cuda_detail {
namespace {

// Elements each block of a forward reduction should cover at least (fewer, larger blocks for
// small losses: at batch 32 most are one or a few blocks).
constexpr size_t kReduceElementsPerBlock = 4096;

// ---- per-element terms of the sums ----
struct KlTerm {  // over rows x E; h = [mu | log_sigma]
  Mat h;
  int e;
  __device__ float operator()(int r, int c) const { return kl_element(h(r, c), h(r, e + c)); }
};
struct L1Term {
  Mat x, v;
  __device__ float operator()(int r, int c) const { return fabsf(x(r, c) - v(r, c)); }
};
struct MeanTerm {
  Mat x;
  __device__ float operator()(int r, int c) const { return x(r, c); }
};

template <class Term>
__global__ void reduce_sum_kernel(Term term, int rows, int cols, float denom, float* partials,
                                  float* out) {
  __shared__ float shared[33];
  float acc = 0.f;
  ZS_FOR_ROWS(r, rows) ZS_FOR_COLS(c, cols) acc += term(r, c);
  const float s = block_sum(acc, shared);
  if (flat_thread() == 0) {
    if (gridDim.x * gridDim.y == 1)
      out[0] = s / denom;
    else
      partials[blockIdx.y * gridDim.x + blockIdx.x] = s;
  }
}

// The second stage: one block adds n partials in index order.
__global__ void finish_sum_kernel(const float* __restrict__ partials, int n, float denom,
                                  float* out) {
  __shared__ float shared[33];
  float acc = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
  const float s = block_sum(acc, shared);
  if (threadIdx.x == 0) out[0] = s / denom;
}

template <class Term>
void launch_reduce(const KernelContext& ctx, Term term, int rows, int cols, float denom,
                   float* out) {
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (n == 0) {  // an empty sum: 0 / denom, as the CPU's loops give
    finish_sum_kernel<<<1, kBlockThreads, 0, ctx.stream>>>(ctx.partials, 0, denom, out);
    ZS_LAUNCH_CHECK();
    return;
  }
  const size_t cap = std::min<size_t>(kMaxReduceBlocks, ctx.partial_floats);
  const int want = static_cast<int>(std::clamp<size_t>(n / kReduceElementsPerBlock, 1, cap));
  const Launch2d l = launch_2d(rows, cols, want);
  reduce_sum_kernel<<<l.grid, l.block, 0, ctx.stream>>>(term, rows, cols, denom, ctx.partials, out);
  ZS_LAUNCH_CHECK();
  const int blocks = static_cast<int>(l.grid.x * l.grid.y);
  if (blocks > 1) {
    finish_sum_kernel<<<1, kBlockThreads, 0, ctx.stream>>>(ctx.partials, blocks, denom, out);
    ZS_LAUNCH_CHECK();
  }
}

__global__ void kl_backward_kernel(Mat h, int e, const float* d_out, float denom, Mat dh) {
  const float scale = d_out[0] / denom;
  ZS_FOR_ROWS(r, h.rows) ZS_FOR_COLS(j, e) {
    float d_mu, d_ls;
    kl_element_grad(h(r, j), h(r, e + j), &d_mu, &d_ls);
    dh(r, j) += scale * d_mu;
    dh(r, e + j) += scale * d_ls;
  }
}

__global__ void l1_backward_kernel(Mat x, Mat v, const float* d_out, float rows, Mat dx, Mat dv) {
  const float scale = d_out[0] / rows;
  ZS_FOR_ROWS(r, x.rows) ZS_FOR_COLS(c, x.cols) {
    const float g = scale * sign_tf(x(r, c) - v(r, c));
    if (!dx.empty()) dx(r, c) += g;
    if (!dv.empty()) dv(r, c) -= g;
  }
}

__global__ void mean_backward_kernel(const float* d_out, float numel, Mat dx) {
  const float g = d_out[0] / numel;
  ZS_FOR_ROWS(r, dx.rows) ZS_FOR_COLS(c, dx.cols) dx(r, c) += g;
}

// One block per row (grid-stride over rows; the loop bound is uniform over the block, so the
// barriers inside block_sum are reached by every thread).
__device__ __forceinline__ void row_dots(const Mat& a, const Mat& b, int r, float* shared,
                                         float* saa, float* sbb, float* sab) {
  float aa = 0.f, bb = 0.f, ab = 0.f;
  for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
    const float av = a(r, c), bv = b(r, c);
    aa += av * av;
    bb += bv * bv;
    ab += av * bv;
  }
  *saa = block_sum(aa, shared);
  *sbb = block_sum(bb, shared);
  *sab = block_sum(ab, shared);
}

__global__ void cosine_mean_forward_kernel(Mat a, Mat b, float denom, float* partials, float* out) {
  __shared__ float shared[33];
  float total = 0.f;
  for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
    float saa, sbb, sab;
    row_dots(a, b, r, shared, &saa, &sbb, &sab);
    total += sab * l2_inv_norm(saa) * l2_inv_norm(sbb);
  }
  if (threadIdx.x == 0) {
    if (gridDim.x == 1)
      out[0] = total / denom;
    else
      partials[blockIdx.x] = total;
  }
}

__global__ void cosine_mean_backward_kernel(Mat a, Mat b, const float* d_out, float rows, Mat da,
                                            Mat db) {
  __shared__ float shared[33];
  const float g = d_out[0] / rows;
  for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
    float saa, sbb, sab;
    row_dots(a, b, r, shared, &saa, &sbb, &sab);
    const float ia = l2_inv_norm(saa), ib = l2_inv_norm(sbb);
    const float cosv = sab * ia * ib;
    // d cos / d a = ia (b_hat - cos a_hat); the second term vanishes where the norm floor holds.
    const float ka = l2_floor_active(saa) ? 0.f : cosv * ia;
    const float kb = l2_floor_active(sbb) ? 0.f : cosv * ib;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
      const float av = a(r, c), bv = b(r, c);
      if (!da.empty()) da(r, c) += g * ia * (bv * ib - ka * av);
      if (!db.empty()) db(r, c) += g * ib * (av * ia - kb * bv);
    }
  }
}

__global__ void softplus_forward_kernel(Mat x, Mat out) {
  ZS_FOR_ROWS(r, x.rows) ZS_FOR_COLS(c, x.cols) out(r, c) = softplus_published(x(r, c));
}

__global__ void softplus_backward_kernel(Mat x, Mat d_out, Mat dx) {
  ZS_FOR_ROWS(r, x.rows) ZS_FOR_COLS(c, x.cols) dx(r, c) += d_out(r, c) * softplus_grad(x(r, c));
}

__global__ void combine_forward_kernel(ScalarTerms terms, float* out) {
  float s = terms.constant;
  for (int i = 0; i < terms.n; ++i) s += terms.weight[i] * terms.value[i][0];
  out[0] = s;
}

__global__ void combine_backward_kernel(ScalarTermGrads grads, const float* d_out) {
  const float g = d_out[0];
  for (int i = 0; i < grads.n; ++i)
    if (grads.grad[i] != nullptr) grads.grad[i][0] += grads.weight[i] * g;
}

bool empty_shape(const Tensor& t) { return t.rows == 0 || t.cols == 0; }

}  // namespace

void launch_kl_forward(const KernelContext& ctx, const Tensor& h, Tensor out) {
  const int e = h.cols / 2;
  launch_reduce(ctx, KlTerm{view(h), e}, h.rows, e, static_cast<float>(h.rows) * e, out.data);
}

void launch_kl_backward(const KernelContext& ctx, const Tensor& h, const Tensor& d_out, Tensor dh) {
  const int e = h.cols / 2;
  if (h.rows == 0 || e == 0 || dh.empty()) return;
  const Launch2d l = launch_2d(h.rows, e, ctx.max_blocks);
  kl_backward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(h), e, d_out.data,
                                                         static_cast<float>(h.rows) * e, view(dh));
  ZS_LAUNCH_CHECK();
}

void launch_l1_forward(const KernelContext& ctx, const Tensor& x, const Tensor& v, Tensor out) {
  launch_reduce(ctx, L1Term{view(x), view(v)}, x.rows, x.cols, static_cast<float>(x.rows),
                out.data);
}

void launch_l1_backward(const KernelContext& ctx, const Tensor& x, const Tensor& v,
                        const Tensor& d_out, Tensor dx, Tensor dv) {
  if (empty_shape(x) || (dx.empty() && dv.empty())) return;
  const Launch2d l = launch_2d(x.rows, x.cols, ctx.max_blocks);
  l1_backward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(x), view(v), d_out.data,
                                                         static_cast<float>(x.rows), view(dx),
                                                         view(dv));
  ZS_LAUNCH_CHECK();
}

void launch_mean_forward(const KernelContext& ctx, const Tensor& x, Tensor out) {
  launch_reduce(ctx, MeanTerm{view(x)}, x.rows, x.cols, static_cast<float>(x.numel()), out.data);
}

void launch_mean_backward(const KernelContext& ctx, const Tensor& d_out, Tensor dx) {
  if (empty_shape(dx)) return;
  const Launch2d l = launch_2d(dx.rows, dx.cols, ctx.max_blocks);
  mean_backward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(d_out.data,
                                                           static_cast<float>(dx.numel()), view(dx));
  ZS_LAUNCH_CHECK();
}

void launch_cosine_mean_forward(const KernelContext& ctx, const Tensor& a, const Tensor& b,
                                Tensor out) {
  const float denom = static_cast<float>(a.rows);
  if (a.rows == 0) {
    finish_sum_kernel<<<1, kBlockThreads, 0, ctx.stream>>>(ctx.partials, 0, denom, out.data);
    ZS_LAUNCH_CHECK();
    return;
  }
  const int cap = static_cast<int>(std::min<size_t>(kMaxReduceBlocks, ctx.partial_floats));
  const int blocks = std::min(a.rows, cap);
  cosine_mean_forward_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(view(a), view(b), denom,
                                                                      ctx.partials, out.data);
  ZS_LAUNCH_CHECK();
  if (blocks > 1) {
    finish_sum_kernel<<<1, kBlockThreads, 0, ctx.stream>>>(ctx.partials, blocks, denom, out.data);
    ZS_LAUNCH_CHECK();
  }
}

void launch_cosine_mean_backward(const KernelContext& ctx, const Tensor& a, const Tensor& b,
                                 const Tensor& d_out, Tensor da, Tensor db) {
  if (a.rows == 0 || (da.empty() && db.empty())) return;
  const int blocks = std::min(a.rows, ctx.max_blocks);
  cosine_mean_backward_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(
      view(a), view(b), d_out.data, static_cast<float>(a.rows), view(da), view(db));
  ZS_LAUNCH_CHECK();
}

void launch_softplus_forward(const KernelContext& ctx, const Tensor& x, Tensor out) {
  if (empty_shape(x)) return;
  const Launch2d l = launch_2d(x.rows, x.cols, ctx.max_blocks);
  softplus_forward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(x), view(out));
  ZS_LAUNCH_CHECK();
}

void launch_softplus_backward(const KernelContext& ctx, const Tensor& x, const Tensor& d_out,
                              Tensor dx) {
  if (empty_shape(x) || dx.empty()) return;
  const Launch2d l = launch_2d(x.rows, x.cols, ctx.max_blocks);
  softplus_backward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(x), view(d_out), view(dx));
  ZS_LAUNCH_CHECK();
}

void launch_combine_forward(const KernelContext& ctx, const ScalarTerms& terms, Tensor out) {
  combine_forward_kernel<<<1, 1, 0, ctx.stream>>>(terms, out.data);
  ZS_LAUNCH_CHECK();
}

void launch_combine_backward(const KernelContext& ctx, const ScalarTermGrads& grads,
                             const Tensor& d_out) {
  combine_backward_kernel<<<1, 1, 0, ctx.stream>>>(grads, d_out.data);
  ZS_LAUNCH_CHECK();
}

}  // namespace zscrgan::cuda_detail
