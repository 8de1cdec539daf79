// Data movement, the fused layer pieces (bias + activation, reparameterised sampling) and the
// step counters. Every element is read and written by one thread, so in-place and aliased
// calls (d_pre == dy, say) behave exactly as the CPU's loops do.
#include <algorithm>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "device_common.cuh"

namespace zscrgan::cuda_detail {
namespace {

__global__ void fill_kernel(Mat t, float value) {
  ZS_FOR_ROWS(r, t.rows) ZS_FOR_COLS(c, t.cols) t(r, c) = value;
}

__global__ void axpy_kernel(Mat y, float alpha, Mat x) {
  ZS_FOR_ROWS(r, y.rows) ZS_FOR_COLS(c, y.cols) y(r, c) += alpha * x(r, c);
}

__global__ void scale_kernel(Mat t, float beta) {
  // beta == 0 writes zeros without reading, as BLAS does (C may hold NaN garbage).
  ZS_FOR_ROWS(r, t.rows) ZS_FOR_COLS(c, t.cols) t(r, c) = beta == 0.f ? 0.f : beta * t(r, c);
}

__global__ void gather_rows_kernel(Mat dst, Mat src, IndexSpan rows, KernelFaultRecord* fault) {
  const int32_t* idx = resolve_indices(rows);  // reads the device step counter when replayed
  ZS_FOR_ROWS(r, dst.rows) {
    const int i = idx[r];
    if (i < 0 || i >= src.rows) {
      report_fault(fault, kGatherRowIndex, i, src.rows, r);
      continue;
    }
    ZS_FOR_COLS(c, dst.cols) dst(r, c) = src(i, c);
  }
}

__global__ void bias_act_forward_kernel(Mat y, const float* __restrict__ bias, Act act) {
  ZS_FOR_ROWS(r, y.rows) ZS_FOR_COLS(c, y.cols) y(r, c) = act_forward(y(r, c) + bias[c], act);
}

// bias_act_backward: a block owns 32 columns (one per lane, so each warp reads 128 contiguous
// bytes of a row) and a chunk of rows, 8 rows at a time (threadIdx.y). Each thread writes its
// elements of d_pre and keeps a running column sum; the 8 sums of a column are added in a
// fixed order in shared memory. With one row chunk the block adds straight into d_bias;
// otherwise it stores a partial per (chunk, column) and bias_grad_finish_kernel adds the
// chunks in order. No atomics: the same inputs give the same bits every run.
constexpr int kBiasCols = 32;
constexpr int kBiasRowThreads = 8;
constexpr int kBiasRowsPerChunk = 64;

__global__ void __launch_bounds__(kBiasCols* kBiasRowThreads)
    bias_act_backward_kernel(Mat y, Mat dy, Mat d_pre, float* d_bias, float* partials,
                             int rows_per_chunk, Act act, bool store_pre, bool store_bias) {
  __shared__ float column_part[kBiasRowThreads][kBiasCols + 1];
  const int c = blockIdx.x * kBiasCols + threadIdx.x;
  const int r_begin = blockIdx.y * rows_per_chunk;
  const int r_end = min(y.rows, r_begin + rows_per_chunk);
  float sum = 0.f;
  if (c < y.cols) {
    for (int r = r_begin + threadIdx.y; r < r_end; r += kBiasRowThreads) {
      const float g = act_backward(dy(r, c), y(r, c), act);
      if (!d_pre.empty()) {
        if (store_pre)
          d_pre(r, c) = g;
        else
          d_pre(r, c) += g;
      }
      sum += g;
    }
  }
  if (d_bias == nullptr) return;  // a kernel argument: the whole block leaves together
  column_part[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < y.cols) {
    float s = 0.f;
    for (int i = 0; i < kBiasRowThreads; ++i) s += column_part[i][threadIdx.x];
    if (gridDim.y == 1)
      d_bias[c] = store_bias ? s : d_bias[c] + s;
    else
      partials[static_cast<size_t>(blockIdx.y) * y.cols + c] = s;
  }
}

__global__ void bias_grad_finish_kernel(const float* __restrict__ partials, int chunks, int cols,
                                        float* d_bias, bool store_bias) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int i = 0; i < chunks; ++i) s += partials[static_cast<size_t>(i) * cols + c];
    d_bias[c] = store_bias ? s : d_bias[c] + s;
  }
}

__global__ void reparam_forward_kernel(Mat h, Mat eps, Mat c, int e) {
  ZS_FOR_ROWS(r, c.rows) ZS_FOR_COLS(j, c.cols) c(r, j) = h(r, j) + portable_expf(h(r, e + j)) * eps(r, j);
}

__global__ void reparam_backward_kernel(Mat h, Mat eps, Mat dc, Mat dh, int e) {
  ZS_FOR_ROWS(r, dc.rows) ZS_FOR_COLS(j, dc.cols) {
    const float g = dc(r, j);
    dh(r, j) += g;
    dh(r, e + j) += g * portable_expf(h(r, e + j)) * eps(r, j);
  }
}

__global__ void increment_counter_kernel(int64_t* counter) { *counter += 1; }

__global__ void store_scalar_kernel(const float* value, float* slots, int64_t n_slots,
                                    int64_t base, const int64_t* counter, int64_t stride,
                                    KernelFaultRecord* fault) {
  const int64_t at = base + (counter != nullptr ? *counter * stride : 0);
  if (at < 0 || at >= n_slots) {
    report_fault(fault, kStoreScalarSlot, at, n_slots, 0);
    return;
  }
  slots[at] = value[0];
}

bool empty_shape(const Tensor& t) { return t.rows == 0 || t.cols == 0; }

}  // namespace

void launch_fill(const KernelContext& ctx, Tensor t, float value) {
  if (empty_shape(t)) return;
  const Launch2d l = launch_2d(t.rows, t.cols, ctx.max_blocks);
  fill_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(t), value);
  ZS_LAUNCH_CHECK();
}

void launch_axpy(const KernelContext& ctx, Tensor y, float alpha, const Tensor& x) {
  if (empty_shape(y)) return;
  const Launch2d l = launch_2d(y.rows, y.cols, ctx.max_blocks);
  axpy_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(y), alpha, view(x));
  ZS_LAUNCH_CHECK();
}

void launch_scale(const KernelContext& ctx, Tensor t, float beta) {
  if (empty_shape(t)) return;
  const Launch2d l = launch_2d(t.rows, t.cols, ctx.max_blocks);
  scale_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(t), beta);
  ZS_LAUNCH_CHECK();
}

void launch_gather_rows(const KernelContext& ctx, Tensor dst, const Tensor& src, IndexSpan rows) {
  if (dst.rows == 0) return;
  // A zero-width gather still checks its indices, as the CPU backend's does.
  const Launch2d l = launch_2d(dst.rows, std::max(dst.cols, 1), ctx.max_blocks);
  gather_rows_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(dst), view(src), rows, ctx.fault);
  ZS_LAUNCH_CHECK();
}

void launch_bias_act_forward(const KernelContext& ctx, Tensor y, const Tensor& bias, Act act) {
  if (empty_shape(y)) return;
  const Launch2d l = launch_2d(y.rows, y.cols, ctx.max_blocks);
  bias_act_forward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(y), bias.data, act);
  ZS_LAUNCH_CHECK();
}

void launch_bias_act_backward(const KernelContext& ctx, const Tensor& y, const Tensor& dy,
                              Tensor d_pre, Tensor d_bias, Act act, bool store_pre,
                              bool store_bias) {
  if (d_pre.empty() && d_bias.empty()) return;
  if (y.rows == 0 && !d_bias.empty() && store_bias) {
    launch_fill(ctx, d_bias, 0.f);  // the column sums of no rows, stored as the CPU stores them
    return;
  }
  if (empty_shape(y)) return;
  const int cols = y.cols;
  int chunks = std::min(ceil_div(y.rows, kBiasRowsPerChunk), 65535);
  if (!d_bias.empty()) {
    const size_t fit = ctx.partial_floats / static_cast<size_t>(cols);
    chunks = static_cast<int>(std::max<size_t>(1, std::min<size_t>(chunks, fit)));
  }
  const int rows_per_chunk = ceil_div(y.rows, chunks);
  chunks = ceil_div(y.rows, rows_per_chunk);  // no empty chunk
  const dim3 grid(ceil_div(cols, kBiasCols), chunks);
  const dim3 block(kBiasCols, kBiasRowThreads);
  bias_act_backward_kernel<<<grid, block, 0, ctx.stream>>>(
      view(y), view(dy), view(d_pre), d_bias.data, ctx.partials, rows_per_chunk, act, store_pre,
      store_bias);
  ZS_LAUNCH_CHECK();
  if (!d_bias.empty() && chunks > 1) {
    const int blocks = std::min(ceil_div(cols, kBlockThreads), ctx.max_blocks);
    bias_grad_finish_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(ctx.partials, chunks, cols,
                                                                       d_bias.data, store_bias);
    ZS_LAUNCH_CHECK();
  }
}

void launch_reparam_forward(const KernelContext& ctx, const Tensor& h, const Tensor& eps, Tensor c) {
  if (empty_shape(c)) return;
  const Launch2d l = launch_2d(c.rows, c.cols, ctx.max_blocks);
  reparam_forward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(h), view(eps), view(c), c.cols);
  ZS_LAUNCH_CHECK();
}

void launch_reparam_backward(const KernelContext& ctx, const Tensor& h, const Tensor& eps,
                             const Tensor& dc, Tensor dh) {
  if (empty_shape(dc) || dh.empty()) return;
  const Launch2d l = launch_2d(dc.rows, dc.cols, ctx.max_blocks);
  reparam_backward_kernel<<<l.grid, l.block, 0, ctx.stream>>>(view(h), view(eps), view(dc),
                                                              view(dh), dc.cols);
  ZS_LAUNCH_CHECK();
}

void launch_increment_counter(const KernelContext& ctx, int64_t* counter) {
  increment_counter_kernel<<<1, 1, 0, ctx.stream>>>(counter);
  ZS_LAUNCH_CHECK();
}

void launch_store_scalar(const KernelContext& ctx, const Tensor& value, Tensor slots, int64_t base,
                         const int64_t* counter, int64_t stride) {
  store_scalar_kernel<<<1, 1, 0, ctx.stream>>>(value.data, slots.data,
                                               static_cast<int64_t>(slots.numel()), base, counter,
                                               stride, ctx.fault);
  ZS_LAUNCH_CHECK();
}

}  // namespace zscrgan::cuda_detail
