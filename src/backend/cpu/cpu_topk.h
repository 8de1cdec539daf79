// The CPU implementation of Backend::topk_cosine, on host arrays (lists ranked as
// backend/topk_order.h says).
#ifndef ZSCRGAN_CPU_TOPK_H
#define ZSCRGAN_CPU_TOPK_H

#include <cstdint>

namespace zscrgan {

// For each of the n_queries query rows, the k gallery rows of highest cosine similarity, best
// first, ties broken by the lower gallery index.
//   queries: n_queries x dim, row stride ld_q >= dim (host memory)
//   gallery: n_gallery x dim, row stride ld_g >= dim (host memory)
//   out_index, out_score: n_queries x k, dense row-major (host memory)
// Rows are L2-normalised as TF's l2_normalize, x * rsqrt(max(sum x^2, 1e-12)): the
// similarity is dot(q, g) * l2_inv_norm(|q|^2) * l2_inv_norm(|g|^2), with the squared norms
// summed in double. Output indices are gallery row numbers plus index_offset.
// A gallery with fewer than k rows (a chunk) fills the remaining slots with index -1 and score
// -inf. A row holding NaN or infinity is an error naming the lowest such row (queries checked
// first); the outputs are then left as they were.
// The similarity matrix is computed in tiles, never whole: each thread takes gallery tiles of
// 256 rows, normalises one and runs its own single-threaded oneDNN matmul against the queries,
// updates its own lists; the threads' lists are merged at the end. Another chunking or gallery
// shape may make the GEMM pick other kernels and round similarities differently (no GEMM
// library promises bitwise equality across shapes), so near-ties may then swap; for a fixed
// call and machine the result is deterministic (it does not depend on which thread took which
// tile).
void cpu_topk_cosine(const float* queries, int64_t n_queries, int64_t ld_q,
                     const float* gallery, int64_t n_gallery, int64_t ld_g, int dim, int k,
                     int64_t index_offset, int64_t* out_index, float* out_score);

}  // namespace zscrgan

#endif  // ZSCRGAN_CPU_TOPK_H
