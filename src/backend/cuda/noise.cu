// Noise fills: element (r, c) of a fill is philox_normal / philox_truncated_normal of
// (stream, r * cols + c), the very functions the CPU backend calls, so both backends draw the
// same numbers. The stream arrives by value and is resolved inside the kernel: a replayed graph
// reads the device step counter at replay time, not the value it had at capture.
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "device_common.cuh"

namespace zscrgan::cuda_detail {
namespace {

template <bool kTruncated>
__global__ void fill_normal_kernel(Mat t, NoiseStream s) {
  const NoiseStream rs = resolve_stream(s);
  ZS_FOR_ROWS(r, t.rows) ZS_FOR_COLS(c, t.cols) {
    const uint64_t element = static_cast<uint64_t>(r) * static_cast<uint64_t>(t.cols) + c;
    t(r, c) = kTruncated ? philox_truncated_normal(rs, element) : philox_normal(rs, element);
  }
}

}  // namespace

void launch_fill_normal(const KernelContext& ctx, Tensor t, NoiseStream s, bool truncated) {
  if (t.rows == 0 || t.cols == 0) return;
  const Launch2d l = launch_2d(t.rows, t.cols, ctx.max_blocks);
  if (truncated)
    fill_normal_kernel<true><<<l.grid, l.block, 0, ctx.stream>>>(view(t), s);
  else
    fill_normal_kernel<false><<<l.grid, l.block, 0, ctx.stream>>>(view(t), s);
  ZS_LAUNCH_CHECK();
}

}  // namespace zscrgan::cuda_detail
