// Top-k cosine retrieval on the CPU at evaluation scale: 2000 queries against 20000 gallery
// rows of width 1024, k = 50. Reports queries/s (items) and the similarity GEMM's FLOP/s
// (2 * queries * gallery * dim per call; normalisation and selection are not counted).
//   build/bench_retrieval --benchmark_filter=CpuTopkCosine
//
// File mode, for comparisons against other libraries on the same inputs
// (bench/compare_retrieval_faiss.py):
//   build/bench_retrieval --queries Q.npy --gallery G.npy --k K [--repeats N] [--out-index I.npy]
// times cpu_topk_cosine on the two float32 matrices N times (default 1), prints one JSON line
// {"seconds_best": ..., "seconds": [...]} and writes the last result's indices
// (queries x K, flattened row-major, int64) to I.npy.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "formats/npy.h"
#include "core/error.h"
#include "eval/retrieval.h"
#include "cpu_topk.h"

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

int file_mode(int argc, char** argv) {
  std::string queries_path, gallery_path, out_path;
  int k = 0, repeats = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_retrieval: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--queries") queries_path = v;
    else if (a == "--gallery") gallery_path = v;
    else if (a == "--out-index") out_path = v;
    else if (a == "--k") k = std::atoi(v.c_str());
    else if (a == "--repeats") repeats = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "bench_retrieval: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (queries_path.empty() || gallery_path.empty() || k < 1 || repeats < 1) {
    std::fprintf(stderr, "bench_retrieval: file mode needs --queries Q.npy --gallery G.npy --k K>=1 [--repeats N>=1]\n");
    return 2;
  }
  try {
    const zscrgan::HostMatrix q = zscrgan::read_npy_matrix(queries_path);
    const zscrgan::HostMatrix g = zscrgan::read_npy_matrix(gallery_path);
    if (q.cols != g.cols) zscrgan::fail(queries_path, " has ", q.cols, " columns, ", gallery_path, " has ", g.cols);
    std::vector<int64_t> index(static_cast<size_t>(q.rows) * k);
    std::vector<float> score(index.size());
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      zscrgan::cpu_topk_cosine(q.data.data(), q.rows, q.cols, g.data.data(), g.rows, g.cols,
                               static_cast<int>(q.cols), k, 0, index.data(), score.data());
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (!out_path.empty()) zscrgan::write_npy_labels(out_path, index);
    std::printf("{\"seconds_best\": %.6f, \"seconds\": [", *std::min_element(seconds.begin(), seconds.end()));
    for (size_t i = 0; i < seconds.size(); ++i) std::printf("%s%.6f", i ? ", " : "", seconds[i]);
    std::printf("]}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_retrieval: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--queries" || std::string(argv[i]) == "--gallery") return file_mode(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
