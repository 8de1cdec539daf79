// Top-k cosine retrieval: the CPU implementation of Backend::topk_cosine, the merge of
// per-chunk top-k lists, and the chunked driver the evaluation calls.
//
// Ordering rule, everywhere in this file: a candidate ranks higher when its cosine similarity
// is higher, and among equal similarities when its gallery index is lower. Lists are stored
// best first. An empty slot (index -1, score -inf) ranks below every candidate.
#ifndef ZSCRGAN_RETRIEVAL_H
#define ZSCRGAN_RETRIEVAL_H

#include <cstdint>
#include <vector>

#include "zscrgan/backend.h"
#include "zscrgan/tensor.h"

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
// -inf. A row holding NaN or infinity is an error naming the row.
// The similarity matrix is computed in tiles (oneDNN matmul on all threads), never whole; the
// lists are updated in parallel over queries. Another thread count, chunking or gallery shape
// may make the GEMM pick other kernels and round similarities differently (no GEMM library
// promises bitwise equality across shapes), so near-ties may then swap; for a fixed call,
// machine and thread count the result is deterministic.
void cpu_topk_cosine(const float* queries, int64_t n_queries, int64_t ld_q,
                     const float* gallery, int64_t n_gallery, int64_t ld_g, int dim, int k,
                     int64_t index_offset, int64_t* out_index, float* out_score);

// Per-query top-k lists on the host, row-major n_queries x k, best first.
struct TopKLists {
  int64_t n_queries = 0;
  int k = 0;
  std::vector<int64_t> index;  // (n_queries, k); -1 marks an empty slot
  std::vector<float> score;    // (n_queries, k); -inf in an empty slot
};

// n_queries lists of k empty slots.
TopKLists make_topk_lists(int64_t n_queries, int k);

// Merges one chunk's lists (n_queries x k, each row best first, as cpu_topk_cosine writes
// them) into `running`, keeping the k best of the union by the ordering rule above.
void merge_topk(TopKLists& running, const int64_t* chunk_index, const float* chunk_score);

// Top-k cosine retrieval over the whole gallery, calling be.topk_cosine on gallery row chunks
// of about chunk_rows rows (so a backend never needs the whole similarity matrix) and merging
// the chunks. Requires 1 <= k <= gallery.rows. No chunk passed to the backend has fewer than
// k rows: chunk_rows below k is raised to k, and a last chunk shorter than k is joined to the
// one before it. The result equals a single be.topk_cosine over the whole gallery up to the
// GEMM's rounding (near-ties may swap; see cpu_topk_cosine).
TopKLists retrieve_topk(Backend& be, const Tensor& queries, const Tensor& gallery, int k,
                        int64_t chunk_rows);

}  // namespace zscrgan

#endif  // ZSCRGAN_RETRIEVAL_H
