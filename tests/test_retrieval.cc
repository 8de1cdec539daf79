// Top-k cosine retrieval on the CPU: against an independent double-precision brute force,
// exact ties, the 1e-12 normalisation floor, short chunks, chunk merging and the chunked driver.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "eval/retrieval.h"
#include "cpu_topk.h"

namespace zscrgan {
namespace {

// Row-major rows x dim with row stride ld; the padding holds NaN so that reading it would
// show up as a non-finite score or an error.
struct Matrix {
  int64_t rows = 0;
  int dim = 0;
  int64_t ld = 0;
  std::vector<float> data;
  Matrix(int64_t r, int d, int64_t stride)
      : rows(r), dim(d), ld(stride),
        data(static_cast<size_t>(std::max<int64_t>(r, 1) * stride),
             std::numeric_limits<float>::quiet_NaN()) {
    for (int64_t i = 0; i < r; ++i)
      for (int c = 0; c < d; ++c) at(i, c) = 0.f;
  }
  float& at(int64_t r, int c) { return data[r * ld + c]; }
  float at(int64_t r, int c) const { return data[r * ld + c]; }
  const float* row(int64_t r) const { return data.data() + r * ld; }
  void copy_row(int64_t dst, int64_t src) {
    for (int c = 0; c < dim; ++c) at(dst, c) = at(src, c);
  }
};

Matrix random_matrix(int64_t rows, int dim, int64_t ld, uint32_t seed) {
  Matrix m(rows, dim, ld);
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int c = 0; c < dim; ++c) m.at(r, c) = normal(gen);
  return m;
}

// Row j is a random nonzero multiple of the unit vector e_j (rows <= dim). Its similarity to
// any query is a single product, the same whatever order a GEMM kernel sums in, so copies of
// a row get bitwise-equal similarities on any machine and tie-breaking is tested exactly.
Matrix scaled_unit_rows(int64_t rows, int dim, int64_t ld, uint32_t seed) {
  Matrix m(rows, dim, ld);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> scale(0.5f, 2.f);
  for (int64_t r = 0; r < rows; ++r) m.at(r, static_cast<int>(r)) = (r % 2 ? -1.f : 1.f) * scale(gen);
  return m;
}

// Independent reference: normalise in double with the same 1e-12 floor, full dot products in
// double, full sort by (score desc, index asc).
double ref_cosine(const Matrix& q, int64_t i, const Matrix& g, int64_t j) {
  double qq = 0, gg = 0, qg = 0;
  for (int c = 0; c < q.dim; ++c) {
    qq += double(q.at(i, c)) * q.at(i, c);
    gg += double(g.at(j, c)) * g.at(j, c);
    qg += double(q.at(i, c)) * g.at(j, c);
  }
  return qg / std::sqrt(std::max(qq, 1e-12)) / std::sqrt(std::max(gg, 1e-12));
}

struct RefList {
  std::vector<int64_t> index;
  std::vector<double> score;
};

RefList ref_topk(const Matrix& q, int64_t i, const Matrix& g, int k) {
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t j = 0; j < g.rows; ++j) all.emplace_back(ref_cosine(q, i, g, j), j);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  RefList out;
  for (int r = 0; r < k && r < static_cast<int>(all.size()); ++r) {
    out.score.push_back(all[r].first);
    out.index.push_back(all[r].second);
  }
  return out;
}

TopKLists run_cpu(const Matrix& q, const Matrix& g, int k, int64_t offset = 0) {
  TopKLists l = make_topk_lists(q.rows, k);
  cpu_topk_cosine(q.data.data(), q.rows, q.ld, g.data.data(), g.rows, g.ld, q.dim, k, offset,
                  l.index.data(), l.score.data());
  return l;
}

// Chunks of the gallery through cpu_topk_cosine, merged as the evaluation merges them.
TopKLists run_chunked(const Matrix& q, const Matrix& g, int k, int64_t chunk) {
  TopKLists running = make_topk_lists(q.rows, k);
  TopKLists part = make_topk_lists(q.rows, k);
  for (int64_t g0 = 0; g0 < g.rows; g0 += chunk) {
    const int64_t n = std::min(chunk, g.rows - g0);
    cpu_topk_cosine(q.data.data(), q.rows, q.ld, g.row(g0), n, g.ld, q.dim, k, g0,
                    part.index.data(), part.score.data());
    merge_topk(running, part.index.data(), part.score.data());
  }
  return running;
}

// Checks lists against the brute force: scores agree to float accuracy, every returned item
// truly has the similarity the reference puts at that rank (so a swap is only tolerated
// between items whose similarities agree to within tolerance), no item repeats.
void expect_matches_reference(const Matrix& q, const Matrix& g, const TopKLists& got, int k) {
  constexpr double kTol = 2e-6;
  int mismatches = 0, exact_index = 0;
  for (int64_t i = 0; i < q.rows; ++i) {
    const RefList ref = ref_topk(q, i, g, k);
    std::vector<int64_t> seen;
    for (int r = 0; r < k; ++r) {
      const int64_t j = got.index[i * k + r];
      const float s = got.score[i * k + r];
      ASSERT_TRUE(j >= 0 && j < g.rows) << "query " << i << " rank " << r << " index " << j;
      seen.push_back(j);
      const double true_score = ref_cosine(q, i, g, j);
      const bool ok = std::abs(s - true_score) <= kTol && std::abs(ref.score[r] - true_score) <= kTol;
      if (j == ref.index[r]) ++exact_index;
      if (!ok && ++mismatches <= 5)
        ADD_FAILURE() << "query " << i << " rank " << r << ": got index " << j << " score " << s
                      << " (true " << true_score << "), reference index " << ref.index[r]
                      << " score " << ref.score[r];
      if (r > 0) EXPECT_GE(got.score[i * k + r - 1], s) << "query " << i << " rank " << r;
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "query " << i;
  }
  EXPECT_EQ(mismatches, 0);
  // Near-ties aside, the very same indices come back.
  EXPECT_GE(exact_index, static_cast<int>(q.rows * k * 99 / 100));
}

// Within one list, bitwise-equal similarities are ordered by the lower gallery index.
void expect_exact_ties_by_index(const TopKLists& l, const std::string& what) {
  for (int64_t i = 0; i < l.n_queries; ++i)
    for (int r = 1; r < l.k; ++r) {
      const size_t at = size_t(i) * l.k + r;
      if (l.score[at - 1] == l.score[at] && l.index[at] >= 0)
        EXPECT_LT(l.index[at - 1], l.index[at]) << what << ": query " << i << " rank " << r;
    }
}

// Two retrievals of the same queries and gallery that may differ only by the GEMM's rounding
// (another shape, chunking or thread count picks other kernels: no BLAS promises bitwise
// equality across them). Rank by rank the scores agree within tolerance, and where the items
// differ both have true similarities (double-precision brute force) that agree within it: a
// near-tie swapped. Each list orders its bitwise-equal scores by index.
void expect_same_up_to_rounding(const Matrix& q, const Matrix& g, const TopKLists& a,
                                const TopKLists& b, const std::string& what) {
  constexpr double kTol = 2e-6;
  ASSERT_EQ(a.n_queries, b.n_queries) << what;
  ASSERT_EQ(a.k, b.k) << what;
  int shown = 0;
  for (size_t at = 0; at < a.index.size(); ++at) {
    const int64_t i = static_cast<int64_t>(at) / a.k;
    const bool empty_a = a.index[at] < 0, empty_b = b.index[at] < 0;
    bool ok = empty_a == empty_b;
    if (ok && !empty_a) {
      ok = std::abs(double(a.score[at]) - b.score[at]) <= kTol;
      if (ok && a.index[at] != b.index[at])
        ok = std::abs(ref_cosine(q, i, g, a.index[at]) - ref_cosine(q, i, g, b.index[at])) <= kTol;
    }
    if (!ok && ++shown <= 5)
      ADD_FAILURE() << what << ": query " << i << " rank " << at % a.k << ": " << a.index[at]
                    << " (" << a.score[at] << ") vs " << b.index[at] << " (" << b.score[at] << ")";
  }
  EXPECT_EQ(shown, 0) << what;
  expect_exact_ties_by_index(a, what + " (first)");
  expect_exact_ties_by_index(b, what + " (second)");
}

TEST(CpuTopkCosine, MatchesBruteForceOnRandomData) {
  // Strided rows (NaN padding) and a gallery spanning more than one 2048-row tile.
  const Matrix q = random_matrix(70, 48, 53, 1);
  const Matrix g = random_matrix(2500, 48, 50, 2);
  expect_matches_reference(q, g, run_cpu(q, g, 20), 20);
}

TEST(CpuTopkCosine, MatchesBruteForceWithManyQueryTiles) {
  // Enough queries for several query tiles on any thread count.
  const Matrix q = random_matrix(700, 16, 16, 3);
  const Matrix g = random_matrix(300, 16, 16, 4);
  expect_matches_reference(q, g, run_cpu(q, g, 7), 7);
}

TEST(CpuTopkCosine, KEqualsGalleryIsAFullRanking) {
  const Matrix q = random_matrix(5, 8, 8, 5);
  const Matrix g = random_matrix(30, 8, 8, 6);
  expect_matches_reference(q, g, run_cpu(q, g, 30), 30);
}

TEST(CpuTopkCosine, ExactTiesGoToTheLowerIndex) {
  // Gallery rows 20..39 duplicate rows 0..19: every similarity comes in an exactly equal pair,
  // and the full ranking must list each pair lower index first.
  const int dim = 24;
  Matrix g = scaled_unit_rows(40, dim, dim + 3, 7);
  for (int64_t j = 20; j < 40; ++j) g.copy_row(j, j - 20);
  const Matrix q = random_matrix(9, dim, dim, 8);
  const int k = 40;
  const TopKLists l = run_cpu(q, g, k);
  for (int64_t i = 0; i < q.rows; ++i) {
    for (int r = 0; r < k; r += 2) {
      const int64_t a = l.index[i * k + r], b = l.index[i * k + r + 1];
      EXPECT_LT(a, 20) << "query " << i << " rank " << r;
      EXPECT_EQ(b, a + 20) << "query " << i << " rank " << r;
      EXPECT_EQ(l.score[i * k + r], l.score[i * k + r + 1]) << "query " << i << " rank " << r;
    }
  }
  // A query equal to a row duplicated three times over: those three come first, in order.
  Matrix g3 = scaled_unit_rows(50, 64, 64, 9);
  g3.copy_row(17, 3);
  g3.copy_row(41, 3);
  Matrix q3(1, 64, 64);
  for (int c = 0; c < 64; ++c) q3.at(0, c) = g3.at(3, c);
  const TopKLists l3 = run_cpu(q3, g3, 5);
  EXPECT_EQ(l3.index[0], 3);
  EXPECT_EQ(l3.index[1], 17);
  EXPECT_EQ(l3.index[2], 41);
  EXPECT_EQ(l3.score[0], l3.score[1]);
  EXPECT_EQ(l3.score[1], l3.score[2]);
  EXPECT_NEAR(l3.score[0], 1.0, 1e-6);
}

TEST(CpuTopkCosine, ZeroRowsAndTheNormFloor) {
  const int dim = 6;
  // Gallery: 0: zero row, 1: e0, 2: -e0, 3: tiny row 1e-7 e0 (|x|^2 = 1e-14 < 1e-12, so the
  // floor applies: normalised it is 1e-7 * 1e6 e0 = 0.1 e0, not a unit vector), 4: e1.
  Matrix g(5, dim, dim);
  g.at(1, 0) = 1.f;
  g.at(2, 0) = -1.f;
  g.at(3, 0) = 1e-7f;
  g.at(4, 1) = 1.f;
  // Queries: 0: zero row (all similarities 0: ties everywhere), 1: 2 e0, 2: tiny 1e-7 e1.
  Matrix q(3, dim, dim);
  q.at(1, 0) = 2.f;
  q.at(2, 1) = 1e-7f;
  const int k = 5;
  const TopKLists l = run_cpu(q, g, k);
  // Zero query: every score is exactly 0, so the ranking is the gallery order.
  for (int r = 0; r < k; ++r) {
    EXPECT_EQ(l.index[r], r);
    EXPECT_EQ(l.score[r], 0.f);
  }
  // 2 e0: e0 (1), tiny e0 (0.1), then zero row and e1 tie at 0 (lower index first), -e0 (-1).
  const std::vector<int64_t> want1{1, 3, 0, 4, 2};
  const std::vector<float> score1{1.f, 0.1f, 0.f, 0.f, -1.f};
  for (int r = 0; r < k; ++r) {
    EXPECT_EQ(l.index[k + r], want1[r]) << "rank " << r;
    EXPECT_NEAR(l.score[k + r], score1[r], 1e-6) << "rank " << r;
  }
  // Tiny 1e-7 e1 normalises to 0.1 e1: e1 scores 0.1, the rest 0.
  EXPECT_EQ(l.index[2 * k], 4);
  EXPECT_NEAR(l.score[2 * k], 0.1f, 1e-6);
  for (int r = 1; r < k; ++r) EXPECT_EQ(l.score[2 * k + r], 0.f);
  EXPECT_EQ((std::vector<int64_t>(l.index.begin() + 2 * k + 1, l.index.end())),
            (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(CpuTopkCosine, GalleryShorterThanKLeavesEmptySlots) {
  const Matrix q = random_matrix(4, 10, 10, 10);
  const Matrix g = random_matrix(3, 10, 10, 11);
  const int k = 5;
  const TopKLists l = run_cpu(q, g, k, /*offset=*/100);
  for (int64_t i = 0; i < q.rows; ++i) {
    const RefList ref = ref_topk(q, i, g, 3);
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(l.index[i * k + r], ref.index[r] + 100);
      EXPECT_NEAR(l.score[i * k + r], ref.score[r], 2e-6);
    }
    for (int r = 3; r < k; ++r) {
      EXPECT_EQ(l.index[i * k + r], -1);
      EXPECT_EQ(l.score[i * k + r], -std::numeric_limits<float>::infinity());
    }
  }
  // An empty gallery: all slots empty.
  const TopKLists none = run_cpu(q, Matrix(0, 10, 10), k);
  for (int64_t j : none.index) EXPECT_EQ(j, -1);
}

TEST(CpuTopkCosine, IndexOffsetIsAdded) {
  const Matrix q = random_matrix(11, 12, 12, 12);
  const Matrix g = random_matrix(90, 12, 12, 13);
  const TopKLists base = run_cpu(q, g, 8);
  const TopKLists shifted = run_cpu(q, g, 8, 12345);
  for (size_t i = 0; i < base.index.size(); ++i) {
    EXPECT_EQ(shifted.index[i], base.index[i] + 12345);
    EXPECT_EQ(shifted.score[i], base.score[i]);
  }
}

TEST(CpuTopkCosine, ThreadCountChangesAtMostRounding) {
  const Matrix q = random_matrix(300, 32, 32, 14);
  Matrix g = random_matrix(500, 32, 32, 15);
  for (int64_t j = 250; j < 500; j += 3) g.copy_row(j, j - 250);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const TopKLists one = run_cpu(q, g, 25);
  for (int threads : {2, 3, 4}) {
    omp_set_num_threads(threads);
    expect_same_up_to_rounding(q, g, one, run_cpu(q, g, 25), std::to_string(threads) + " threads");
  }
  omp_set_num_threads(saved);
}

TEST(CpuTopkCosine, ChunkedAndMergedEqualsOneCallUpToRounding) {
  // Rows j and j + 7 are identical for j <= 60, so exact ties straddle many chunk boundaries;
  // the queries include copies of duplicated rows, which put the tied pair at the very top.
  const int dim = 20;
  Matrix g = random_matrix(130, dim, dim + 1, 16);
  for (int64_t j = 0; j <= 60; ++j) g.copy_row(j + 7, j);  // rows 0..67 repeat with period 7
  Matrix q = random_matrix(12, dim, dim, 17);
  for (int c = 0; c < dim; ++c) {
    q.at(0, c) = g.at(3, c);   // ties 3 / 10 / 17 / ... at the top
    q.at(1, c) = g.at(13, c);  // same chain, split differently by each chunk size
  }
  for (int k : {1, 4, 10}) {
    const TopKLists whole = run_cpu(q, g, k);
    for (int64_t chunk : {1, 2, 3, 5, 7, 10, 16, 33, 129, 130, 500}) {
      expect_same_up_to_rounding(q, g, whole, run_chunked(q, g, k, chunk),
                                 "k " + std::to_string(k) + " chunk " + std::to_string(chunk));
    }
  }
}

TEST(CpuTopkCosine, ChunkedAndMergedEqualsOneCallAtWidthUpToRounding) {
  // A wider row (not a multiple of any SIMD width) and a gallery past one 2048-row tile, so
  // the GEMM runs its blocked paths and column remainders; duplicates straddle the tile edge.
  const int dim = 301;
  Matrix g = random_matrix(2600, dim, dim, 25);
  for (int64_t j = 2040; j < 2060; ++j) g.copy_row(j + 300, j);
  for (int64_t j = 0; j < 10; ++j) g.copy_row(2047 - j, j);
  Matrix q = random_matrix(150, dim, dim + 5, 26);
  for (int c = 0; c < dim; ++c) {
    q.at(0, c) = g.at(2047, c);
    q.at(1, c) = g.at(2050, c);
  }
  const int k = 12;
  const TopKLists whole = run_cpu(q, g, k);
  // Row 2047 is a copy of row 0 and row 2350 of row 2050: each pair tops its query's list (in
  // either order unless the two similarities are bitwise equal, then by index).
  using Pair = std::vector<int64_t>;
  auto top_two = [&](int64_t query) {
    Pair p{whole.index[query * k], whole.index[query * k + 1]};
    std::sort(p.begin(), p.end());
    return p;
  };
  EXPECT_EQ(top_two(0), (Pair{0, 2047}));
  EXPECT_EQ(top_two(1), (Pair{2050, 2350}));
  expect_exact_ties_by_index(whole, "one call");
  for (int64_t chunk : {97, 1000, 2047, 2049})
    expect_same_up_to_rounding(q, g, whole, run_chunked(q, g, k, chunk), "chunk " + std::to_string(chunk));
}

TEST(CpuTopkCosine, BadInputsAreErrors) {
  Matrix q = random_matrix(3, 4, 4, 18);
  Matrix g = random_matrix(6, 4, 5, 19);
  std::vector<int64_t> idx(3 * 2);
  std::vector<float> sc(3 * 2);
  const auto call = [&](int64_t ld_q, int64_t ld_g, int k) {
    cpu_topk_cosine(q.data.data(), q.rows, ld_q, g.data.data(), g.rows, ld_g, 4, k, 0,
                    idx.data(), sc.data());
  };
  EXPECT_THROW(call(4, 5, 0), Error);
  EXPECT_THROW(call(3, 5, 2), Error);
  EXPECT_THROW(call(4, 3, 2), Error);
  g.at(4, 2) = std::numeric_limits<float>::infinity();
  try {
    call(4, 5, 2);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gallery row 4"), std::string::npos) << e.what();
  }
}

TEST(CpuTopkCosine, BadGalleryRowInALaterTileNamesTheLowestAndLeavesOutputsUntouched) {
  // Bad rows in several gallery tiles (taken by different threads), the lowest well past the
  // first tile: the error names the lowest on every thread count, and the outputs keep what
  // they held (the lists are built aside and written only on success).
  const Matrix q = random_matrix(5, 16, 16, 27);
  Matrix g = random_matrix(3000, 16, 17, 28);
  g.at(2999, 3) = std::numeric_limits<float>::quiet_NaN();
  g.at(1700, 0) = -std::numeric_limits<float>::infinity();
  g.at(2100, 15) = std::numeric_limits<float>::infinity();
  const int k = 4;
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<int64_t> idx(q.rows * k, 777);
    std::vector<float> sc(q.rows * k, 7.f);
    try {
      cpu_topk_cosine(q.data.data(), q.rows, q.ld, g.data.data(), g.rows, g.ld, q.dim, k, 0,
                      idx.data(), sc.data());
      ADD_FAILURE() << threads << " threads: expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("gallery row 1700 "), std::string::npos)
          << threads << " threads: " << e.what();
    }
    EXPECT_EQ(idx, std::vector<int64_t>(q.rows * k, 777)) << threads << " threads";
    EXPECT_EQ(sc, std::vector<float>(q.rows * k, 7.f)) << threads << " threads";
  }
  omp_set_num_threads(saved);
  // A bad query is reported (before the gallery is read) with its row.
  Matrix q2 = q;
  q2.at(3, 7) = std::numeric_limits<float>::quiet_NaN();
  std::vector<int64_t> idx(q.rows * k);
  std::vector<float> sc(q.rows * k);
  try {
    cpu_topk_cosine(q2.data.data(), q2.rows, q2.ld, g.data.data(), g.rows, g.ld, q.dim, k, 0,
                    idx.data(), sc.data());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("query row 3 "), std::string::npos) << e.what();
  }
}

TEST(MergeTopk, KeepsTheBestOfBothByScoreThenIndex) {
  TopKLists running = make_topk_lists(2, 4);
  EXPECT_EQ(running.index, std::vector<int64_t>(8, -1));
  // Query 0: running [9 (0.9), 4 (0.5), 7 (0.5), empty]; chunk [2 (0.5), 1 (0.1), 3 (0.1), 0 (0.0)]
  //   -> [9 (0.9), 2 (0.5), 4 (0.5), 7 (0.5)]: the tie at 0.5 is ordered by index across lists.
  // Query 1: running all empty; chunk [5 (0.3), empty, empty, empty] -> [5, empty x 3].
  const float inf = std::numeric_limits<float>::infinity();
  running.index = {9, 4, 7, -1, -1, -1, -1, -1};
  running.score = {0.9f, 0.5f, 0.5f, -inf, -inf, -inf, -inf, -inf};
  const std::vector<int64_t> ci{2, 1, 3, 0, 5, -1, -1, -1};
  const std::vector<float> cs{0.5f, 0.1f, 0.1f, 0.f, 0.3f, -inf, -inf, -inf};
  merge_topk(running, ci.data(), cs.data());
  EXPECT_EQ(running.index, (std::vector<int64_t>{9, 2, 4, 7, 5, -1, -1, -1}));
  EXPECT_EQ(running.score, (std::vector<float>{0.9f, 0.5f, 0.5f, 0.5f, 0.3f, -inf, -inf, -inf}));
}

// A backend that only retrieves (through the CPU implementation) and records the chunks it
// is given; every other op is a test failure.
class RetrievalOnlyBackend final : public Backend {
 public:
  std::vector<std::pair<int64_t, int>> calls;  // (index_offset, gallery rows)

  Device device() const override { return Device::CPU; }
  std::string description() const override { return "retrieval-only test double"; }

 protected:
  void do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k, int64_t index_offset,
                      int64_t* out_index, float* out_score) override {
    calls.emplace_back(index_offset, gallery.rows);
    cpu_topk_cosine(queries.data, queries.rows, queries.ld, gallery.data, gallery.rows,
                    gallery.ld, queries.cols, k, index_offset, out_index, out_score);
  }

#define ZS_UNUSED_OP(sig) \
  sig override { fail("retrieval-only test backend: unexpected call"); }
  ZS_UNUSED_OP(void* do_allocate(size_t))
  ZS_UNUSED_OP(void do_deallocate(void*))
  ZS_UNUSED_OP(void do_upload(Tensor, const float*))
  ZS_UNUSED_OP(void do_download(const Tensor&, float*))
  ZS_UNUSED_OP(void do_upload_bytes(void*, const void*, size_t))
  ZS_UNUSED_OP(void do_download_bytes(void*, const void*, size_t))
  ZS_UNUSED_OP(void do_synchronize())
  ZS_UNUSED_OP(void do_fill(Tensor, float))
  ZS_UNUSED_OP(void do_copy(Tensor, const Tensor&))
  ZS_UNUSED_OP(void do_axpy(Tensor, float, const Tensor&))
  ZS_UNUSED_OP(void do_gather_rows(Tensor, const Tensor&, IndexSpan))
  ZS_UNUSED_OP(void do_gemm(bool, bool, float, const Tensor&, const Tensor&, float, Tensor))
  ZS_UNUSED_OP(void do_bias_act_forward(Tensor, const Tensor&, Act))
  ZS_UNUSED_OP(void do_bias_act_backward(const Tensor&, const Tensor&, Tensor, Tensor, Act, GradWrite, GradWrite))
  ZS_UNUSED_OP(void do_fill_normal(Tensor, NoiseStream))
  ZS_UNUSED_OP(void do_fill_truncated_normal(Tensor, NoiseStream))
  ZS_UNUSED_OP(void do_reparam_forward(const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_reparam_backward(const Tensor&, const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_kl_forward(const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_kl_backward(const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_l1_forward(const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_l1_backward(const Tensor&, const Tensor&, const Tensor&, Tensor, Tensor))
  ZS_UNUSED_OP(void do_mean_forward(const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_mean_backward(const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_cosine_mean_forward(const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_cosine_mean_backward(const Tensor&, const Tensor&, const Tensor&, Tensor,
                                            Tensor))
  ZS_UNUSED_OP(void do_softplus_forward(const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_softplus_backward(const Tensor&, const Tensor&, Tensor))
  ZS_UNUSED_OP(void do_combine_forward(const ScalarTerms&, Tensor))
  ZS_UNUSED_OP(void do_combine_backward(const ScalarTermGrads&, const Tensor&))
  ZS_UNUSED_OP(void do_rmsprop_update(Tensor, const Tensor&, Tensor, const RmsPropHyper&))
  ZS_UNUSED_OP(
      void do_adam_update(Tensor, const Tensor&, Tensor, Tensor, Tensor, const AdamHyper&))
  ZS_UNUSED_OP(void do_increment_counter(int64_t*))
  ZS_UNUSED_OP(void do_store_scalar(const Tensor&, Tensor, int64_t, const int64_t*, int64_t))
#undef ZS_UNUSED_OP
};

Tensor as_tensor(Matrix& m) {
  return Tensor(m.data.data(), static_cast<int>(m.rows), m.dim, static_cast<int>(m.ld),
                Device::CPU);
}

TEST(RetrieveTopk, ChunkedDriverEqualsOneCallUpToRoundingAndNeverPassesShortChunks) {
  const int dim = 16;
  Matrix g = random_matrix(103, dim, dim + 2, 20);
  for (int64_t j = 0; j < 40; ++j) g.copy_row(j + 50, j);  // ties across chunks
  Matrix q = random_matrix(9, dim, dim, 21);
  for (int c = 0; c < dim; ++c) q.at(0, c) = g.at(10, c);
  const int k = 6;
  const TopKLists single = run_cpu(q, g, k);
  for (int64_t chunk : {1, 4, 6, 10, 17, 50, 98, 102, 103, 1000}) {
    RetrievalOnlyBackend be;
    const TopKLists got = retrieve_topk(be, as_tensor(q), as_tensor(g), k, chunk);
    expect_same_up_to_rounding(q, g, single, got, "chunk " + std::to_string(chunk));
    int64_t covered = 0;
    for (const auto& [offset, rows] : be.calls) {
      EXPECT_EQ(offset, covered) << "chunk " << chunk;
      EXPECT_GE(rows, k) << "chunk " << chunk;
      covered += rows;
    }
    EXPECT_EQ(covered, g.rows) << "chunk " << chunk;
  }
}

TEST(RetrieveTopk, ValidatesArguments) {
  Matrix q = random_matrix(2, 8, 8, 22);
  Matrix g = random_matrix(5, 8, 8, 23);
  Matrix narrow = random_matrix(5, 7, 7, 24);
  RetrievalOnlyBackend be;
  EXPECT_THROW(retrieve_topk(be, as_tensor(q), as_tensor(g), 6, 10), Error);  // k > gallery
  EXPECT_THROW(retrieve_topk(be, as_tensor(q), as_tensor(g), 0, 10), Error);
  EXPECT_THROW(retrieve_topk(be, as_tensor(q), as_tensor(g), 2, 0), Error);
  EXPECT_THROW(retrieve_topk(be, as_tensor(q), as_tensor(narrow), 2, 10), Error);
  Tensor on_gpu = as_tensor(g);
  on_gpu.device = Device::CUDA;
  EXPECT_THROW(retrieve_topk(be, as_tensor(q), on_gpu, 2, 10), Error);
  EXPECT_TRUE(be.calls.empty());
}

}  // namespace
}  // namespace zscrgan
