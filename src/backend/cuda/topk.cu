// Top-k retrieval pieces: row L2 normalisation, and the on-chip merge of one tile of
// similarities into each query's running top-k list.
//
// A candidate is a 64-bit key (see topk_key): the high half orders scores descending, the low
// half is the gallery row. Keys are unique (rows are), so "the k smallest keys" is one exact
// set whatever the order of evaluation, and ascending key order is precisely the CPU's rule:
// higher score first, ties to the lower gallery row. One block per query sorts its k running
// keys together with the tile's keys (CUB's block radix sort, in registers and shared memory)
// and keeps the first k. Memory: the k keys per query plus one tile of similarities.
#include <cub/block/block_radix_sort.cuh>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "device_common.cuh"

namespace zscrgan::cuda_detail {
namespace {

constexpr int kMergeThreads = 512;
constexpr int kMergeItems = (kTopkMaxK + kTopkTileRows + kMergeThreads - 1) / kMergeThreads;
static_assert(kMergeThreads * kMergeItems >= kTopkMaxK + kTopkTileRows,
              "one block must hold the running list and a whole tile");

using MergeSort = cub::BlockRadixSort<unsigned long long, kMergeThreads, kMergeItems>;
static_assert(sizeof(MergeSort::TempStorage) <= 48 * 1024,
              "the merge's sort must fit in static shared memory");

// Warp per row. Rows at and after valid_rows are padding: written as zeros (they score 0 and
// are never selected, see tile_valid below).
__global__ void l2_normalize_rows_kernel(const float* __restrict__ src, int64_t ld_src,
                                         int valid_rows, int rows_total, int dim,
                                         float* __restrict__ dst) {
  const int row = static_cast<int>((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp);
  const int lane = threadIdx.x % kWarp;
  if (row >= rows_total) return;  // whole warps leave together
  float* out = dst + static_cast<size_t>(row) * dim;
  if (row >= valid_rows) {
    for (int c = lane; c < dim; c += kWarp) out[c] = 0.f;
    return;
  }
  const float* in = src + static_cast<size_t>(row) * ld_src;
  // The squared norm in double, rounded to float before the floor, as the CPU's top-k sums it
  // (cpu_topk.cc): a float square is exact in double, so the two agree to the last bit but
  // for the order of the additions.
  double s = 0.0;
  for (int c = lane; c < dim; c += kWarp) s += static_cast<double>(in[c]) * in[c];
  const float inv = l2_inv_norm(static_cast<float>(warp_sum(s)));
  for (int c = lane; c < dim; c += kWarp) out[c] = in[c] * inv;
}

__device__ __forceinline__ uint32_t float_bits(float x) { return __float_as_uint(x); }

// Block q merges query q: candidates are its k running keys (positions [0, k)) and the tile's
// tile_valid scores (positions [k, k + tile_valid)); the rest is kTopkEmptyKey. Positions are
// dealt out striped (coalesced loads); the sort does not care where a key starts.
__global__ void __launch_bounds__(kMergeThreads, 2)
    topk_merge_tile_kernel(const float* __restrict__ scores, int ld_scores, int tile_valid,
                           uint32_t tile_base, unsigned long long* lists, int k) {
  __shared__ typename MergeSort::TempStorage temp;
  const int q = blockIdx.x;
  const float* row = scores + static_cast<size_t>(q) * ld_scores;
  unsigned long long* list = lists + static_cast<size_t>(q) * k;
  unsigned long long keys[kMergeItems];
#pragma unroll
  for (int i = 0; i < kMergeItems; ++i) {
    const int p = i * kMergeThreads + threadIdx.x;
    unsigned long long key = kTopkEmptyKey;
    if (p < k)
      key = list[p];
    else if (p - k < tile_valid)
      key = topk_key(float_bits(row[p - k]), tile_base + static_cast<uint32_t>(p - k));
    keys[i] = key;
  }
  MergeSort(temp).SortBlockedToStriped(keys);
  // Every read of `list` above happened before this barrier; the writes below come after it.
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kMergeItems; ++i) {
    const int p = i * kMergeThreads + threadIdx.x;  // striped: rank p
    if (p < k) list[p] = keys[i];
  }
}

// Warp per row: *first = the lowest row holding NaN or infinity (atomicMin: the result does
// not depend on which warp gets there first). *first must start above every row number.
__global__ void first_non_finite_row_kernel(const float* __restrict__ src, int64_t ld, int rows,
                                            int dim, int* first) {
  const int row = static_cast<int>((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp);
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps leave together
  const float* in = src + static_cast<size_t>(row) * ld;
  bool bad = false;
  for (int c = lane; c < dim; c += kWarp) bad = bad || !isfinite(in[c]);
  if (__any_sync(0xffffffffu, bad) && lane == 0) atomicMin(first, row);
}

}  // namespace

void launch_first_non_finite_row(const KernelContext& ctx, const float* src, int64_t ld, int rows,
                                 int dim, int* first) {
  ZS_CUDA_CHECK(cudaMemsetAsync(first, 0x7f, sizeof(int), ctx.stream));  // 0x7f7f7f7f: none
  if (rows == 0 || dim == 0) return;
  const int blocks = ceil_div(rows, kBlockThreads / kWarp);
  first_non_finite_row_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(src, ld, rows, dim, first);
  ZS_LAUNCH_CHECK();
}

void launch_l2_normalize_rows(const KernelContext& ctx, const float* src, int64_t ld_src,
                              int valid_rows, int rows_total, int dim, float* dst) {
  if (rows_total == 0 || dim == 0) return;
  const int rows_per_block = kBlockThreads / kWarp;
  const int blocks = ceil_div(rows_total, rows_per_block);
  l2_normalize_rows_kernel<<<blocks, kBlockThreads, 0, ctx.stream>>>(src, ld_src, valid_rows,
                                                                     rows_total, dim, dst);
  ZS_LAUNCH_CHECK();
}

void launch_topk_merge_tile(const KernelContext& ctx, const float* scores, int ld_scores,
                            int n_queries, int tile_valid, uint32_t tile_base,
                            unsigned long long* lists, int k) {
  ZS_CHECK(k >= 1 && k <= kTopkMaxK && tile_valid >= 0 && tile_valid <= kTopkTileRows,
           "topk merge: k ", k, ", tile of ", tile_valid, " rows");
  if (n_queries == 0) return;
  topk_merge_tile_kernel<<<n_queries, kMergeThreads, 0, ctx.stream>>>(scores, ld_scores, tile_valid,
                                                                      tile_base, lists, k);
  ZS_LAUNCH_CHECK();
}

}  // namespace zscrgan::cuda_detail
