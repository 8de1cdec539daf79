#include "cpu_topk.h"

#include <omp.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/elementwise.h"
#include "backend/topk_order.h"
#include "core/error.h"
#include "onednn_matmul.h"

namespace zscrgan {
namespace {

// Gallery rows per tile. Each thread takes whole tiles (in increasing order, dynamically),
// normalises one into its own buffer and runs its own single-threaded similarity GEMM
// against a query tile: the unit tile (1 MiB at width 1024) and the similarity tile (1 MiB at
// 1024 queries) stay in the core's L2 while the lists are updated, and the threads never wait
// for each other until the end.
constexpr int64_t kGalleryTile = 256;
constexpr int64_t kMaxQueryTile = 1024;
// Rows whose squared norms are summed together: independent additions that overlap in the
// pipeline (each row's own sum is still taken in column order, so the values do not change).
constexpr int kNormRows = 8;
// Similarities compared with a list's k-th score at once before any insertion is tried.
constexpr int kScanWidth = 16;

// Squared L2 norms of `rows` rows, each summed in double in column order (more accurate than
// the float sum TF does; the caller rounds to float before the 1e-12 floor, as TF applies it
// in float). A sum is finite exactly when its row is: a float squared is below 1.2e77 and
// exact in double, so no finite row overflows, and an infinity or NaN carries through.
void sums_of_squares(const float* src, int64_t ld, int64_t rows, int dim, double* out) {
  int64_t r = 0;
  for (; r + kNormRows <= rows; r += kNormRows) {
    double s[kNormRows] = {};
    const float* x = src + r * ld;
    for (int c = 0; c < dim; ++c)
      for (int i = 0; i < kNormRows; ++i) {
        const double v = x[i * ld + c];
        s[i] += v * v;
      }
    for (int i = 0; i < kNormRows; ++i) out[r + i] = s[i];
  }
  for (; r < rows; ++r) {
    const float* x = src + r * ld;
    double s = 0.0;
    for (int c = 0; c < dim; ++c) s += static_cast<double>(x[c]) * x[c];
    out[r] = s;
  }
}

// dst (rows x dim, dense) = src rows scaled as TF's l2_normalize. Returns the first row (from
// 0) holding NaN or infinity, or -1; rows after it are left unwritten.
int64_t normalize_rows(const float* src, int64_t ld, int64_t rows, int dim, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += kNormRows) {
    const int64_t n = std::min<int64_t>(kNormRows, rows - r0);
    double sum_sq[kNormRows];
    sums_of_squares(src + r0 * ld, ld, n, dim, sum_sq);
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(sum_sq[i])) return r0 + i;
      const float* x = src + (r0 + i) * ld;
      float* y = dst + (r0 + i) * static_cast<int64_t>(dim);
      const float inv = l2_inv_norm(static_cast<float>(sum_sq[i]));
      for (int c = 0; c < dim; ++c) y[c] = x[c] * inv;
    }
  }
  return -1;
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

// Whether any of x[0 : kScanWidth) > t. GCC does not vectorise this test on its own (it keeps
// scalar compares for the float semantics), so it is written out in SSE2, which every x86-64
// CPU has (the project is built for baseline x86-64; the test reads a row that sits in L2, so
// wider vectors gain little here).
inline bool any_above(const float* x, float t) {
#if defined(__SSE2__)
  static_assert(kScanWidth == 16, "four 4-float vectors");
  const __m128 tv = _mm_set1_ps(t);
  const __m128 gt = _mm_or_ps(_mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(x), tv),
                                        _mm_cmpgt_ps(_mm_loadu_ps(x + 4), tv)),
                              _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 8), tv),
                                        _mm_cmpgt_ps(_mm_loadu_ps(x + 12), tv)));
  return _mm_movemask_ps(gt) != 0;
#else
  bool any = false;
  for (int c = 0; c < kScanWidth; ++c) any |= x[c] > t;
  return any;
#endif
}

// Offers row[0 : n) (gallery indices first, first + 1, ...) to one list. Most similarities
// cannot enter a list that has seen a few thousand rows: each group of kScanWidth is first
// compared with the k-th score as a whole (vectorised), and only a group with a candidate is
// offered element by element.
void offer_row(const float* row, int64_t n, int64_t first, int k, float* list_score,
               int64_t* list_index) {
  float kth = list_score[k - 1];
  int64_t j = 0;
  for (; j + kScanWidth <= n; j += kScanWidth) {
    if (!any_above(row + j, kth)) continue;
    for (int c = 0; c < kScanWidth; ++c) offer(row[j + c], first + j + c, k, list_score, list_index);
    kth = list_score[k - 1];
  }
  for (; j < n; ++j) offer(row[j], first + j, k, list_score, list_index);
}

// Lowers `target` to `value` if smaller (the lowest bad row seen by any thread).
void atomic_min(std::atomic<int64_t>& target, int64_t value) {
  int64_t cur = target.load(std::memory_order_relaxed);
  while (value < cur && !target.compare_exchange_weak(cur, value, std::memory_order_relaxed)) {
  }
}

// One thread's working set: its unit gallery tile, similarity tile, lists over the tiles it
// took, and oneDNN scratchpad.
struct ThreadState {
  std::unique_ptr<float[]> g_unit, sim;
  std::vector<float> score;
  std::vector<int64_t> index;
  std::unique_ptr<unsigned char[]> scratch;
};

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

  // Queries are normalised once (and checked on the way); a bad query is reported before the
  // gallery is read.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  const std::unique_ptr<float[]> q_unit(new float[static_cast<size_t>(n_queries) * dim]);
  {
    int64_t bad_q = kNone;
#pragma omp parallel for schedule(static) reduction(min : bad_q)
    for (int64_t r0 = 0; r0 < n_queries; r0 += 16) {
      const int64_t bad = normalize_rows(queries + r0 * ld_q, ld_q, std::min<int64_t>(16, n_queries - r0),
                                         dim, q_unit.get() + r0 * dim);
      if (bad >= 0) bad_q = std::min(bad_q, r0 + bad);
    }
    if (bad_q != kNone) fail("topk_cosine: query row ", bad_q, " holds NaN or infinity");
  }
  if (n_gallery == 0) {
    std::fill(out_index, out_index + n_queries * k, kEmptyIndex);
    std::fill(out_score, out_score + n_queries * k, kEmptyScore);
    return;
  }

  // Each thread takes gallery tiles in increasing order and keeps its own lists of every
  // query over the tiles it took; the lists are merged at the end. Every similarity is the
  // same single-threaded GEMM of the same shape whichever thread computes it, each thread's
  // lists see their rows in index order, and the merge ranks by (score, index), so the result
  // does not depend on which thread took which tile. The gallery is checked for NaN and
  // infinity while it is normalised; nothing is written to the outputs before every tile
  // below the lowest bad row has been checked, so a bad row is an error with outputs untouched.
  const int64_t tile_q = std::min(kMaxQueryTile, n_queries);
  const int64_t tile_g = std::min(kGalleryTile, n_gallery);
  const int64_t n_tiles = (n_gallery + tile_g - 1) / tile_g;
  const int64_t n_qtiles = (n_queries + tile_q - 1) / tile_q;
  constexpr int kMaxThreads = 64;
  const int threads = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({omp_get_max_threads(), n_tiles, kMaxThreads})));

  // The GEMM shapes: full tiles, and the last (shorter) gallery tile and query tile.
  // sim (nq x ng) = q_unit[q0 : q0 + nq] (nq x dim) * g_unit (ng x dim)^T
  auto shape = [&](int64_t nq, int64_t ng) {
    GemmCall call;
    call.trans_b = true;
    call.m = static_cast<int>(nq);
    call.n = static_cast<int>(ng);
    call.k = dim;
    call.lda = dim;
    call.ldb = dim;
    call.ldc = ng;
    return call;
  };
  OnednnMatmul& matmul = onednn_matmul();
  const int64_t last_ng = n_gallery - (n_tiles - 1) * tile_g;
  const int64_t last_nq = n_queries - (n_qtiles - 1) * tile_q;
  const OnednnMatmul::SingleThreadGemm* gemm[2][2];  // [last query tile][last gallery tile]
  size_t scratch_bytes = 0;
  for (int lq = 0; lq < 2; ++lq)
    for (int lg = 0; lg < 2; ++lg) {
      gemm[lq][lg] = &matmul.single_thread_gemm(shape(lq ? last_nq : tile_q, lg ? last_ng : tile_g));
      scratch_bytes = std::max(scratch_bytes, gemm[lq][lg]->scratch_bytes());
    }

  std::vector<ThreadState> state(threads);
  for (ThreadState& st : state) {
    st.g_unit.reset(new float[static_cast<size_t>(tile_g) * dim]);
    st.sim.reset(new float[static_cast<size_t>(tile_q) * tile_g]);
    st.score.assign(static_cast<size_t>(n_queries) * k, kEmptyScore);
    st.index.assign(static_cast<size_t>(n_queries) * k, kEmptyIndex);
    if (scratch_bytes > 0) st.scratch.reset(new unsigned char[scratch_bytes]);
  }

  std::atomic<int64_t> bad_g{kNone};
  std::atomic<bool> failed{false};
  std::string error;  // the first exception a thread caught (oneDNN), rethrown after the region
#pragma omp parallel num_threads(threads)
  {
    ThreadState& st = state[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t g0 = t * tile_g;
      if (failed.load(std::memory_order_relaxed) || g0 > bad_g.load(std::memory_order_relaxed)) continue;
      const int64_t ng = std::min(tile_g, n_gallery - g0);
      const int64_t bad = normalize_rows(gallery + g0 * ld_g, ld_g, ng, dim, st.g_unit.get());
      if (bad >= 0) atomic_min(bad_g, g0 + bad);
      // Once any row is bad the call fails: only the checks of lower tiles remain to be done.
      if (bad_g.load(std::memory_order_relaxed) != kNone) continue;
      try {
        for (int64_t qt = 0; qt < n_qtiles; ++qt) {
          const int64_t q0 = qt * tile_q;
          const int64_t nq = std::min(tile_q, n_queries - q0);
          GemmCall call = shape(nq, ng);
          call.a = q_unit.get() + q0 * dim;
          call.b = st.g_unit.get();
          call.c = st.sim.get();
          gemm[qt == n_qtiles - 1 && nq != tile_q][ng != tile_g]->run(call, st.scratch.get());
          for (int64_t i = 0; i < nq; ++i)
            offer_row(st.sim.get() + i * ng, ng, index_offset + g0, k,
                      st.score.data() + (q0 + i) * k, st.index.data() + (q0 + i) * k);
        }
      } catch (const std::exception& e) {
#pragma omp critical(zscrgan_topk_error)
        if (!failed.exchange(true)) error = e.what();
      }
    }
  }
  if (bad_g.load() != kNone) fail("topk_cosine: gallery row ", bad_g.load(), " holds NaN or infinity");
  if (failed.load()) fail(error);

  // Merge the threads' lists: each holds disjoint gallery rows, ranked by (score, index).
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_queries; ++i) {
    int head[kMaxThreads];  // next unread rank of each thread's list
    std::fill(head, head + threads, 0);
    for (int r = 0; r < k; ++r) {
      int best = -1;
      for (int t = 0; t < threads; ++t) {
        if (head[t] >= k) continue;
        const size_t at = static_cast<size_t>(i) * k + head[t];
        if (best < 0) {
          best = t;
          continue;
        }
        const size_t bat = static_cast<size_t>(i) * k + head[best];
        if (ranks_before(state[t].score[at], state[t].index[at], state[best].score[bat], state[best].index[bat]))
          best = t;
      }
      const size_t bat = static_cast<size_t>(i) * k + head[best]++;
      out_score[i * k + r] = state[best].score[bat];
      out_index[i * k + r] = state[best].index[bat];
    }
  }
}

}  // namespace zscrgan
