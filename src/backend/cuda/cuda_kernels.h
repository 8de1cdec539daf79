// Host-side launchers of the CUDA kernels, one per backend op (or piece of one). The backend
// (cuda_backend.cu) checks shapes and calls these; each launches on ctx.stream, checks the
// launch, never allocates and never synchronises.
#ifndef ZSCRGAN_KERNELS_CUDA_KERNELS_H
#define ZSCRGAN_KERNELS_CUDA_KERNELS_H

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"
#include "backend/elementwise.h"
#include "core/tensor.h"

namespace zscrgan::cuda_detail {

// A broken invariant seen inside a kernel (an index out of range). The first one is recorded
// in this device-memory record and the kernel skips the offending element; the backend reads
// the record at its next synchronisation and throws an Error naming the op. (A __trap would
// poison the CUDA context instead: every later call of the process would fail.)
enum KernelFault : int { kNoFault = 0, kGatherRowIndex = 1, kStoreScalarSlot = 2 };
struct KernelFaultRecord {
  int fault;        // a KernelFault; kNoFault while none happened
  int unused;
  long long value;  // the offending index
  long long limit;  // the valid range is [0, limit)
  long long where;  // the output row it was read for (gather_rows), else 0
};

// What every launcher needs: the stream, a block budget for grid-stride loops, the backend's
// reduction scratch (per-block partial sums of the two-stage reductions) and its fault record.
struct KernelContext {
  cudaStream_t stream;
  int max_blocks;        // grid-stride launches use at most this many blocks
  float* partials;       // reduction scratch, partial_floats floats
  size_t partial_floats;
  KernelFaultRecord* fault;  // device memory
};

// Reductions to one scalar use at most this many blocks (and partials).
constexpr int kMaxReduceBlocks = 1024;

// ---- layers.cu: data movement, layer pieces, counters ----
void launch_fill(const KernelContext& ctx, Tensor t, float value);
void launch_axpy(const KernelContext& ctx, Tensor y, float alpha, const Tensor& x);
void launch_scale(const KernelContext& ctx, Tensor t, float beta);  // t = beta t (beta 0: t = 0)
void launch_gather_rows(const KernelContext& ctx, Tensor dst, const Tensor& src, IndexSpan rows);
void launch_bias_act_forward(const KernelContext& ctx, Tensor y, const Tensor& bias, Act act);
// d_pre += g, d_bias += column sums of g; = instead of += where store_pre / store_bias.
void launch_bias_act_backward(const KernelContext& ctx, const Tensor& y, const Tensor& dy,
                              Tensor d_pre, Tensor d_bias, Act act, bool store_pre,
                              bool store_bias);
void launch_reparam_forward(const KernelContext& ctx, const Tensor& h, const Tensor& eps, Tensor c);
void launch_reparam_backward(const KernelContext& ctx, const Tensor& h, const Tensor& eps,
                             const Tensor& dc, Tensor dh);
void launch_increment_counter(const KernelContext& ctx, int64_t* counter);
void launch_store_scalar(const KernelContext& ctx, const Tensor& value, Tensor slots, int64_t base,
                         const int64_t* counter, int64_t stride);

// ---- noise.cu ----
void launch_fill_normal(const KernelContext& ctx, Tensor t, NoiseStream s, bool truncated);

// ---- losses.cu ----
void launch_kl_forward(const KernelContext& ctx, const Tensor& h, Tensor out);
void launch_kl_backward(const KernelContext& ctx, const Tensor& h, const Tensor& d_out, Tensor dh);
void launch_l1_forward(const KernelContext& ctx, const Tensor& x, const Tensor& v, Tensor out);
void launch_l1_backward(const KernelContext& ctx, const Tensor& x, const Tensor& v,
                        const Tensor& d_out, Tensor dx, Tensor dv);
void launch_mean_forward(const KernelContext& ctx, const Tensor& x, Tensor out);
void launch_mean_backward(const KernelContext& ctx, const Tensor& d_out, Tensor dx);
void launch_cosine_mean_forward(const KernelContext& ctx, const Tensor& a, const Tensor& b,
                                Tensor out);
void launch_cosine_mean_backward(const KernelContext& ctx, const Tensor& a, const Tensor& b,
                                 const Tensor& d_out, Tensor da, Tensor db);
void launch_softplus_forward(const KernelContext& ctx, const Tensor& x, Tensor out);
void launch_softplus_backward(const KernelContext& ctx, const Tensor& x, const Tensor& d_out,
                              Tensor dx);
void launch_combine_forward(const KernelContext& ctx, const ScalarTerms& terms, Tensor out);
void launch_combine_backward(const KernelContext& ctx, const ScalarTermGrads& grads,
                             const Tensor& d_out);

// ---- optimizers.cu: flat, contiguous parameter ranges of n elements ----
void launch_rmsprop_update(const KernelContext& ctx, float* params, const float* grads,
                           float* mean_square, size_t n, const RmsPropHyper& h);
void launch_adam_update(const KernelContext& ctx, float* params, const float* grads, float* m,
                        float* v, size_t n, float* beta_powers, const AdamHyper& h);

// ---- topk.cu ----
// The largest k this implementation selects (one block sorts k + kTopkTileRows candidates).
constexpr int kTopkMaxK = 1024;
constexpr int kTopkTileRows = 4096;  // gallery rows per similarity tile
// dst (rows_total x dim, dense) = L2-normalised rows of src's first valid_rows rows; the rows
// from valid_rows to rows_total are zero (padding of the last gallery tile).
void launch_l2_normalize_rows(const KernelContext& ctx, const float* src, int64_t ld_src,
                              int valid_rows, int rows_total, int dim, float* dst);
// *first (device) = the lowest of rows whose first dim elements hold NaN or infinity, or a
// value >= rows when none does.
void launch_first_non_finite_row(const KernelContext& ctx, const float* src, int64_t ld, int rows,
                                 int dim, int* first);
// Merges one tile of similarities into the running top-k lists of n_queries queries:
// scores is n_queries x ld_scores (the first tile_valid columns are real gallery rows
// tile_base, tile_base + 1, ...); lists holds k sorted keys per query.
void launch_topk_merge_tile(const KernelContext& ctx, const float* scores, int ld_scores,
                            int n_queries, int tile_valid, uint32_t tile_base,
                            unsigned long long* lists, int k);

// Sort keys of the top-k lists: ascending key order is descending score, then ascending
// gallery index. The score is recoverable exactly from the key.
constexpr unsigned long long kTopkEmptyKey = ~0ull;  // after every real key
#if defined(__CUDACC__)
__host__ __device__
#endif
inline unsigned long long topk_key(uint32_t score_bits, uint32_t index) {
  // -0.0 and +0.0 compare equal, as in the CPU's comparison: give them one key.
  if (score_bits == 0x80000000u) score_bits = 0u;
  // Monotone map of float order to unsigned order, then flipped for descending scores.
  const uint32_t ascending = (score_bits & 0x80000000u) ? ~score_bits : (score_bits | 0x80000000u);
  return (static_cast<unsigned long long>(~ascending) << 32) | index;
}
inline uint32_t topk_key_score_bits(unsigned long long key) {
  const uint32_t ascending = ~static_cast<uint32_t>(key >> 32);
  return (ascending & 0x80000000u) ? (ascending & 0x7fffffffu) : ~ascending;
}
inline uint32_t topk_key_index(unsigned long long key) { return static_cast<uint32_t>(key); }

}  // namespace zscrgan::cuda_detail

#endif  // ZSCRGAN_KERNELS_CUDA_KERNELS_H
