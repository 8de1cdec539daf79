// Top-k cosine retrieval on the CPU at evaluation scale: 2000 queries against 20000 gallery
// rows of width 1024, k = 50. Reports queries/s (items) and the similarity GEMM's FLOP/s
// (2 * queries * gallery * dim per call; normalisation and selection are not counted).
//   build/bench_retrieval --benchmark_filter=CpuTopkCosine
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "zscrgan/retrieval.h"

namespace {

std::vector<float> random_rows(int64_t rows, int dim, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(rows) * dim);
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& x : v) x = normal(gen);
  return v;
}

void BM_CpuTopkCosine(benchmark::State& state) {
  const int64_t n_queries = state.range(0);
  const int64_t n_gallery = state.range(1);
  const int dim = static_cast<int>(state.range(2));
  const int k = static_cast<int>(state.range(3));
  const std::vector<float> queries = random_rows(n_queries, dim, 1);
  const std::vector<float> gallery = random_rows(n_gallery, dim, 2);
  std::vector<int64_t> index(static_cast<size_t>(n_queries) * k);
  std::vector<float> score(static_cast<size_t>(n_queries) * k);
  for (auto _ : state) {
    zscrgan::cpu_topk_cosine(queries.data(), n_queries, dim, gallery.data(), n_gallery, dim, dim,
                             k, 0, index.data(), score.data());
    benchmark::DoNotOptimize(index.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n_queries);
  state.counters["FLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(n_queries) * static_cast<double>(n_gallery) * dim,
      benchmark::Counter::kIsIterationInvariantRate);
}

// A few seconds per run on 2 cores; fixed iterations keep the whole family under ~20 s.
BENCHMARK(BM_CpuTopkCosine)
    ->ArgNames({"queries", "gallery", "dim", "k"})
    ->Args({2000, 20000, 1024, 50})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
