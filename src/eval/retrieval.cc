#include "eval/retrieval.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "backend/topk_order.h"
#include "core/error.h"

namespace zscrgan {

TopKLists make_topk_lists(int64_t n_queries, int k) {
  if (n_queries < 0) fail("make_topk_lists: n_queries must be >= 0, got ", n_queries);
  if (k < 1) fail("make_topk_lists: k must be >= 1, got ", k);
  TopKLists lists;
  lists.n_queries = n_queries;
  lists.k = k;
  lists.index.assign(static_cast<size_t>(n_queries) * k, kEmptyIndex);
  lists.score.assign(static_cast<size_t>(n_queries) * k, kEmptyScore);
  return lists;
}

void merge_topk(TopKLists& running, const int64_t* chunk_index, const float* chunk_score) {
  const int k = running.k;
  const size_t expected = static_cast<size_t>(running.n_queries) * static_cast<size_t>(k);
  if (running.index.size() != expected || running.score.size() != expected)
    fail("merge_topk: running lists hold ", running.index.size(), " indices and ",
         running.score.size(), " scores, expected ", running.n_queries, " x ", k);
  if (running.n_queries == 0) return;
  if (!chunk_index || !chunk_score) fail("merge_topk: null chunk pointer");

#pragma omp parallel
  {
    std::vector<float> merged_score(k);
    std::vector<int64_t> merged_index(k);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < running.n_queries; ++q) {
      float* rs = running.score.data() + q * k;
      int64_t* ri = running.index.data() + q * k;
      const float* cs = chunk_score + q * k;
      const int64_t* ci = chunk_index + q * k;
      // a + b == out < k, so neither cursor runs past its list.
      int a = 0, b = 0;
      for (int out = 0; out < k; ++out) {
        if (ranks_before(cs[b], ci[b], rs[a], ri[a])) {
          merged_score[out] = cs[b];
          merged_index[out] = ci[b];
          ++b;
        } else {
          merged_score[out] = rs[a];
          merged_index[out] = ri[a];
          ++a;
        }
      }
      std::copy(merged_score.begin(), merged_score.end(), rs);
      std::copy(merged_index.begin(), merged_index.end(), ri);
    }
  }
}

TopKLists retrieve_topk(Backend& be, const Tensor& queries, const Tensor& gallery, int k,
                        int64_t chunk_rows) {
  if (queries.device != be.device() || gallery.device != be.device())
    fail("retrieve_topk: queries on ", device_name(queries.device), " and gallery on ",
         device_name(gallery.device), ", backend on ", device_name(be.device()));
  if (queries.cols != gallery.cols)
    fail("retrieve_topk: queries have ", queries.cols, " columns, gallery has ", gallery.cols);
  if (k < 1 || k > gallery.rows)
    fail("retrieve_topk: k = ", k, " must lie in [1, gallery rows = ", gallery.rows, "]");
  if (chunk_rows < 1) fail("retrieve_topk: chunk_rows must be >= 1, got ", chunk_rows);

  TopKLists lists = make_topk_lists(queries.rows, k);
  if (queries.rows == 0) return lists;
  const int64_t chunk = std::max<int64_t>(chunk_rows, k);
  const int64_t n_gallery = gallery.rows;
  if (chunk >= n_gallery) {
    be.topk_cosine(queries, gallery, k, 0, lists.index.data(), lists.score.data());
    return lists;
  }
  std::vector<int64_t> chunk_index(lists.index.size());
  std::vector<float> chunk_score(lists.score.size());
  for (int64_t g0 = 0; g0 < n_gallery;) {
    int64_t rows = std::min(chunk, n_gallery - g0);
    if (n_gallery - (g0 + rows) < k) rows = n_gallery - g0;  // no tail chunk shorter than k
    const Tensor part = gallery.row_block(static_cast<int>(g0), static_cast<int>(rows));
    be.topk_cosine(queries, part, k, g0, chunk_index.data(), chunk_score.data());
    merge_topk(lists, chunk_index.data(), chunk_score.data());
    g0 += rows;
  }
  return lists;
}

}  // namespace zscrgan
