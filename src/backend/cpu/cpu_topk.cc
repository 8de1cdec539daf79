#include "cpu_topk.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "backend/elementwise.h"
#include "backend/topk_order.h"
#include "core/error.h"
#include "onednn_matmul.h"

namespace zscrgan {
namespace {


// Gallery rows per similarity tile. A query tile of up to kMaxQueryTile rows times this many
// gallery rows is the only similarity storage (8 MiB at the maximum).
constexpr int64_t kGalleryTile = 2048;
constexpr int64_t kMaxQueryTile = 1024;


// Squared L2 norm summed in double (more accurate than the float sum TF does; the result is
// rounded to float before the 1e-12 floor, as TF applies it in float).
float sum_of_squares(const float* row, int dim) {
  double s = 0.0;
  for (int c = 0; c < dim; ++c) s += static_cast<double>(row[c]) * row[c];
  return static_cast<float>(s);
}

bool row_is_finite(const float* row, int dim) {
  for (int c = 0; c < dim; ++c)
    if (!std::isfinite(row[c])) return false;
  return true;
}

// The first row (lowest number) holding NaN or infinity, or -1.
int64_t first_non_finite_row(const float* data, int64_t rows, int64_t ld, int dim) {
  int64_t first = std::numeric_limits<int64_t>::max();
#pragma omp parallel for schedule(static) reduction(min : first)
  for (int64_t r = 0; r < rows; ++r)
    if (r < first && !row_is_finite(data + r * ld, dim)) first = r;
  return first == std::numeric_limits<int64_t>::max() ? -1 : first;
}

// dst (rows x dim, dense) = src rows scaled as TF's l2_normalize.
void normalize_rows(const float* src, int64_t ld, int64_t rows, int dim, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * ld;
    float* y = dst + r * static_cast<int64_t>(dim);
    const float inv = l2_inv_norm(sum_of_squares(x, dim));
    for (int c = 0; c < dim; ++c) y[c] = x[c] * inv;
  }
}

// Inserts (s, j) into one best-first list of k if it ranks there. Candidates arrive in
// increasing gallery index, so an equal score never displaces an entry already present.
inline void offer(float s, int64_t j, int k, float* list_score, int64_t* list_index) {
  if (!(s > list_score[k - 1])) return;
  int p = k - 1;
  while (p > 0 && s > list_score[p - 1]) {
    list_score[p] = list_score[p - 1];
    list_index[p] = list_index[p - 1];
    --p;
  }
  list_score[p] = s;
  list_index[p] = j;
}

}  // namespace

void cpu_topk_cosine(const float* queries, int64_t n_queries, int64_t ld_q,
                     const float* gallery, int64_t n_gallery, int64_t ld_g, int dim, int k,
                     int64_t index_offset, int64_t* out_index, float* out_score) {
  if (k < 1) fail("topk_cosine: k must be >= 1, got ", k);
  if (dim < 1) fail("topk_cosine: dim must be >= 1, got ", dim);
  if (n_queries < 0 || n_gallery < 0)
    fail("topk_cosine: negative row count (queries ", n_queries, ", gallery ", n_gallery, ")");
  if (ld_q < dim) fail("topk_cosine: query row stride ", ld_q, " < dim ", dim);
  if (ld_g < dim) fail("topk_cosine: gallery row stride ", ld_g, " < dim ", dim);
  if (n_queries == 0) return;
  if (!queries || !out_index || !out_score)
    fail("topk_cosine: null query or output pointer for ", n_queries, " queries");
  if (n_gallery > 0 && !gallery) fail("topk_cosine: null gallery pointer for ", n_gallery, " rows");
  if (index_offset < 0) fail("topk_cosine: index_offset must be >= 0, got ", index_offset);

  const int64_t bad_q = first_non_finite_row(queries, n_queries, ld_q, dim);
  if (bad_q >= 0) fail("topk_cosine: query row ", bad_q, " holds NaN or infinity");
  const int64_t bad_g = first_non_finite_row(gallery, n_gallery, ld_g, dim);
  if (bad_g >= 0) fail("topk_cosine: gallery row ", bad_g, " holds NaN or infinity");

  std::fill(out_index, out_index + n_queries * k, kEmptyIndex);
  std::fill(out_score, out_score + n_queries * k, kEmptyScore);
  if (n_gallery == 0) return;

  // Queries are normalised once; gallery tiles are normalised as they are reached, so the
  // gallery is read once and never copied whole. Per gallery tile, one similarity GEMM per
  // query tile on all threads (oneDNN), then the lists updated in parallel over queries.
  // Every similarity is the same full-length dot product whichever tile computes it, and each
  // query's list sees the gallery in index order.
  const int64_t tile_q = std::min(kMaxQueryTile, n_queries);
  const int64_t tile_g = std::min(kGalleryTile, n_gallery);
  // Left uninitialised: the parallel normalisations write (and first touch) every element.
  const std::unique_ptr<float[]> q_unit(new float[static_cast<size_t>(n_queries) * dim]);
  const std::unique_ptr<float[]> g_unit(new float[static_cast<size_t>(tile_g) * dim]);
  std::vector<float> sim(static_cast<size_t>(tile_q) * tile_g);
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < n_queries; r0 += 16)
    normalize_rows(queries + r0 * ld_q, ld_q, std::min<int64_t>(16, n_queries - r0), dim,
                   q_unit.get() + r0 * dim);
  OnednnMatmul& matmul = onednn_matmul();
  for (int64_t g0 = 0; g0 < n_gallery; g0 += tile_g) {
    const int64_t ng = std::min(tile_g, n_gallery - g0);
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < ng; r0 += 64)
      normalize_rows(gallery + (g0 + r0) * ld_g, ld_g, std::min<int64_t>(64, ng - r0), dim,
                     g_unit.get() + r0 * dim);
    const int64_t first = index_offset + g0;
    for (int64_t q0 = 0; q0 < n_queries; q0 += tile_q) {
      const int64_t nq = std::min(tile_q, n_queries - q0);
      // sim (nq x ng) = q_unit[q0 : q0 + nq] (nq x dim) * g_unit (ng x dim)^T
      GemmCall call;
      call.trans_b = true;
      call.m = static_cast<int>(nq);
      call.n = static_cast<int>(ng);
      call.k = dim;
      call.a = q_unit.get() + q0 * dim;
      call.lda = dim;
      call.b = g_unit.get();
      call.ldb = dim;
      call.c = sim.data();
      call.ldc = ng;
      matmul.run(call);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < nq; ++i) {
        const float* row = sim.data() + i * ng;
        float* list_score = out_score + (q0 + i) * k;
        int64_t* list_index = out_index + (q0 + i) * k;
        for (int64_t j = 0; j < ng; ++j) offer(row[j], first + j, k, list_score, list_index);
      }
    }
  }
}

}  // namespace zscrgan
