// Whole-step benchmarks: the median time of an E-step iteration's D steps, its G step, a CSEM
// step, and a whole EM round, at the demo size and at the published size, on every backend this
// build and machine can run. Run: ./build/bench_train_step [--benchmark_filter=demo]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench_sizes.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"

namespace zscrgan {
namespace {

using Size = BenchSize;

struct Fixture {
  std::unique_ptr<Backend> backend;
  Dataset data;
  std::unique_ptr<Trainer> trainer;
};

std::unique_ptr<Fixture> make_fixture(const Size& s, bool cuda) {
  auto f = std::make_unique<Fixture>();
  f->backend = cuda ? make_cuda_backend() : make_cpu_backend();
  f->data = bench_dataset(s);
  f->trainer = std::make_unique<Trainer>(bench_config(s), f->data, *f->backend);
  return f;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One E-step iteration's n_critic D steps (reported per D step).
void BM_DStep(benchmark::State& state, Size s, bool cuda) {
  auto f = make_fixture(s, cuda);
  Trainer& trainer = *f->trainer;
  TrainerSteps t(trainer);
  t.begin_round();
  for (auto _ : state) {  // the step counter stays at 0: every iteration reuses batch 0's rows
    const auto t0 = std::chrono::steady_clock::now();
    t.d_steps();
    trainer.backend().synchronize();
    state.SetIterationTime(seconds_since(t0) / trainer.config().n_critic);
    t.g_step();
  }
}

void BM_GStep(benchmark::State& state, Size s, bool cuda) {
  auto f = make_fixture(s, cuda);
  Trainer& trainer = *f->trainer;
  TrainerSteps t(trainer);
  t.begin_round();
  for (auto _ : state) {
    t.d_steps();
    trainer.backend().synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    t.g_step();
    trainer.backend().synchronize();
    state.SetIterationTime(seconds_since(t0));
  }
}

// A chunk of CSEM steps (its generation pass included), reported per CSEM step.
void BM_CsemStep(benchmark::State& state, Size s, bool cuda) {
  auto f = make_fixture(s, cuda);
  Trainer& trainer = *f->trainer;
  TrainerSteps t(trainer);
  const int n = t.csem_chunk_steps();
  for (auto _ : state) {
    t.begin_round();  // resets the step counters the CSEM steps log through
    const auto t0 = std::chrono::steady_clock::now();
    t.csem_chunk(0, n);
    trainer.backend().synchronize();
    state.SetIterationTime(seconds_since(t0) / n);
  }
}

void BM_Round(benchmark::State& state, Size s, bool cuda, bool graphs) {
  auto f = make_fixture(s, cuda);
  Trainer& t = *f->trainer;
  t.set_capture(graphs);
  // A warm-up round first, untimed as the PyTorch peer's is: the first round on a fresh trainer
  // also creates the GEMM primitives, captures the graphs and first touches the arena.
  const auto t_first = std::chrono::steady_clock::now();
  t.train_round();
  t.backend().synchronize();
  state.counters["first_round_ms"] = 1e3 * seconds_since(t_first);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    t.train_round();
    t.backend().synchronize();
    state.SetIterationTime(seconds_since(t0));
  }
  state.counters["graphs"] = t.replays_captured_steps() ? 1 : 0;
}

void register_all() {
  std::vector<std::pair<std::string, bool>> backends = {{"cpu", false}};
  if (cuda_unavailable_reason().empty()) backends.push_back({"cuda", true});
  for (const auto& [be, cuda] : backends)
    for (const Size& s : {kDemo, kPublished}) {
      const std::string suffix = std::string("/") + s.name + "/" + be;
      const bool slow = !cuda && std::string(s.name) == "published";
      benchmark::RegisterBenchmark(("d_step" + suffix).c_str(), BM_DStep, s, cuda)
          ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(slow ? 3 : 30)->Repetitions(3)
          ->ReportAggregatesOnly(true);
      benchmark::RegisterBenchmark(("g_step" + suffix).c_str(), BM_GStep, s, cuda)
          ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(slow ? 3 : 30)->Repetitions(3)
          ->ReportAggregatesOnly(true);
      benchmark::RegisterBenchmark(("csem_step" + suffix).c_str(), BM_CsemStep, s, cuda)
          ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(slow ? 1 : 5)->Repetitions(3)
          ->ReportAggregatesOnly(true);
      // "min": the fastest repetition, which bench/compare_with_pytorch.sh keeps as our best.
      benchmark::RegisterBenchmark(("round" + suffix).c_str(), BM_Round, s, cuda, true)
          ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(slow ? 1 : 3)
          ->ComputeStatistics("min", [](const std::vector<double>& v) {
            return *std::min_element(v.begin(), v.end());
          })
          ->ReportAggregatesOnly(true);
      if (cuda)  // the same round with every call issued eagerly: what graph replay saves
        benchmark::RegisterBenchmark(("round_eager" + suffix).c_str(), BM_Round, s, cuda, false)
            ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(3)
            ->ReportAggregatesOnly(true);
    }
}

}  // namespace
}  // namespace zscrgan

int main(int argc, char** argv) {
  zscrgan::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
