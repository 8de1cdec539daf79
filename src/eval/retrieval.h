// Top-k cosine retrieval over galleries of any size: the merge of per-chunk top-k lists and the
// chunked driver the evaluation and inference call. Lists follow the ranking rule of
// backend/topk_order.h.
#ifndef ZSCRGAN_RETRIEVAL_H
#define ZSCRGAN_RETRIEVAL_H

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace zscrgan {

// Per-query top-k lists on the host, row-major n_queries x k, best first.
struct TopKLists {
  int64_t n_queries = 0;
  int k = 0;
  std::vector<int64_t> index;  // (n_queries, k); -1 marks an empty slot
  std::vector<float> score;    // (n_queries, k); -inf in an empty slot
};

// n_queries lists of k empty slots.
TopKLists make_topk_lists(int64_t n_queries, int k);

// Merges one chunk's lists (n_queries x k, each row best first, as Backend::topk_cosine writes
// them) into `running`, keeping the k best of the union by the ordering rule above.
void merge_topk(TopKLists& running, const int64_t* chunk_index, const float* chunk_score);

// Top-k cosine retrieval over the whole gallery, calling be.topk_cosine on gallery row chunks
// of about chunk_rows rows (so a backend never needs the whole similarity matrix) and merging
// the chunks. Requires 1 <= k <= gallery.rows. No chunk passed to the backend has fewer than
// k rows: chunk_rows below k is raised to k, and a last chunk shorter than k is joined to the
// one before it. The result equals a single be.topk_cosine over the whole gallery up to the
// GEMM's rounding (near-ties may swap; see backend/cpu/cpu_topk.h).
TopKLists retrieve_topk(Backend& be, const Tensor& queries, const Tensor& gallery, int k,
                        int64_t chunk_rows);

}  // namespace zscrgan

#endif  // ZSCRGAN_RETRIEVAL_H
