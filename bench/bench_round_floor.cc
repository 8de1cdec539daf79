// The CPU round against its GEMM floor. For each size, after a warm-up round, timed EM rounds
// alternate with passes over the floor (round, floor, round, floor, ...), so that a load spike
// on the shared machine lands on one sample of one side rather than on a whole side. Every
// timed round runs with the GEMM census on, which records every GEMM the trainer actually
// issues (shape, transposes, strides, fused bias/activation, threads), how often and the time
// spent in it; the fastest round's census is the one reported. Each floor pass times every
// distinct GEMM alone (same library, same thread count, warm buffers, fastest of 7 samples).
// Prints
//   round:  seconds per EM round, the best of the timed rounds (each listed)
//   floor:  sum over the round's GEMMs of count x time alone, each GEMM's best over the passes
//           (each pass's own sum listed)
//   GFLOP/s achieved by the round, and round / floor (best against best, as the PyTorch
//   comparison keeps each side's best)
// how much of the fastest round was spent inside its GEMMs and outside them, and the GEMMs
// that weigh most in the floor, each with its time per call in that round.
//
// Run: ./build/bench_round_floor [--size demo|published|both] [--rounds N] [--top N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "onednn_matmul.h"
#include "bench_sizes.h"
#include "backend/backend.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"

namespace zscrgan {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double flops_of(const GemmCall& c) { return 2.0 * c.m * c.n * c.k; }

// Seconds of one GEMM of this shape run alone (buffers sized by its strides, filled with small
// values), after warming up: the fastest of 7 samples, since the floor is a best case and a
// shared machine only ever adds time.
double time_alone(const OnednnMatmul::ShapeCount& sc) {
  GemmCall c = sc.shape;
  const size_t a_elems = static_cast<size_t>(c.trans_a ? c.k : c.m) * c.lda;
  const size_t b_elems = static_cast<size_t>(c.trans_b ? c.n : c.k) * c.ldb;
  const size_t c_elems = static_cast<size_t>(c.m) * c.ldc;
  std::vector<float> a(a_elems, 0.01f), b(b_elems, 0.02f), out(c_elems, 0.f), bias(c.n, 0.1f);
  c.a = a.data();
  c.b = b.data();
  c.c = out.data();
  c.bias = sc.has_bias ? bias.data() : nullptr;
  OnednnMatmul& mm = onednn_matmul();
  for (int i = 0; i < 3; ++i) mm.run(c, sc.threads);
  // Enough repeats for ~20 ms of work per sample, 7 samples.
  const double t0 = now_s();
  mm.run(c, sc.threads);
  const double once = std::max(now_s() - t0, 1e-7);
  const int reps = std::clamp(static_cast<int>(0.02 / once), 1, 2000);
  std::vector<double> samples;
  for (int s = 0; s < 7; ++s) {
    const double s0 = now_s();
    for (int r = 0; r < reps; ++r) mm.run(c, sc.threads);
    samples.push_back((now_s() - s0) / reps);
  }
  return *std::min_element(samples.begin(), samples.end());
}

void run_size(const BenchSize& size, int rounds, int top) {
  auto be = make_cpu_backend();
  const Dataset data = bench_dataset(size);
  Trainer t(bench_config(size), data, *be);
  OnednnMatmul& mm = onednn_matmul();

  t.train_round();  // warm-up: creates the primitives, the arena settles
  std::vector<double> round_s, floor_s;
  std::vector<OnednnMatmul::ShapeCount> census;  // the fastest timed round's
  size_t census_round = 0;
  std::vector<double> alone;  // per census shape: its best time alone over the floor passes
  for (int r = 0; r < rounds; ++r) {
    mm.start_census();  // every timed round counts its GEMMs; the fastest round's is kept
    const double t0 = now_s();
    t.train_round();
    round_s.push_back(now_s() - t0);
    std::vector<OnednnMatmul::ShapeCount> counted = mm.stop_census();
    if (r == 0) {
      census = std::move(counted);
      alone.assign(census.size(), 1e30);
    } else if (round_s[r] < round_s[census_round]) {
      // The same schedule every round, so the same shapes in the same order (stop_census sorts).
      if (counted.size() != census.size()) throw std::runtime_error("the rounds issued different GEMMs");
      for (size_t i = 0; i < census.size(); ++i)
        if (counted[i].count != census[i].count || counted[i].shape.m != census[i].shape.m ||
            counted[i].shape.n != census[i].shape.n || counted[i].shape.k != census[i].shape.k)
          throw std::runtime_error("the rounds issued different GEMMs");
      census = std::move(counted);
      census_round = static_cast<size_t>(r);
    }
    double pass = 0;
    for (size_t i = 0; i < census.size(); ++i) {
      const double s = time_alone(census[i]);
      alone[i] = std::min(alone[i], s);
      pass += s * census[i].count;
    }
    floor_s.push_back(pass);
  }
  const double round = *std::min_element(round_s.begin(), round_s.end());
  double in_round = 0;  // seconds the census round (the fastest) spent inside GEMMs
  for (const auto& sc : census) in_round += sc.seconds;

  struct Row {
    OnednnMatmul::ShapeCount sc;
    double alone_s, total_s;
  };
  std::vector<Row> rows;
  double floor = 0, flops = 0;
  int64_t calls = 0;
  for (size_t i = 0; i < census.size(); ++i) {
    const auto& sc = census[i];
    rows.push_back({sc, alone[i], alone[i] * sc.count});
    floor += alone[i] * sc.count;
    flops += flops_of(sc.shape) * sc.count;
    calls += sc.count;
  }
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.total_s > y.total_s; });

  std::printf("\n[%s] %zu distinct GEMMs, %lld calls, %.1f GFLOP per round\n", size.name,
              census.size(), static_cast<long long>(calls), flops / 1e9);
  auto list = [](const std::vector<double>& v) {
    for (size_t i = 0; i < v.size(); ++i) std::printf("%s%.3f", i ? ", " : "", v[i]);
  };
  std::printf("[%s] round %.3f s (best of %d: ", size.name, round, rounds);
  list(round_s);
  std::printf("), GEMM floor %.3f s (passes: ", floor);
  list(floor_s);
  std::printf("), round %.1f GFLOP/s (floor %.1f), round / floor %.2f\n", flops / round / 1e9,
              flops / floor / 1e9, round / floor);
  std::printf("[%s] the census of the fastest round: %.3f s, of which %.3f s in its GEMMs (%.2f x their floor) and %.3f s outside them\n",
              size.name, round_s[census_round], in_round, in_round / floor, round_s[census_round] - in_round);
  std::printf("[%s] heaviest GEMMs in the floor (m x n x k, op, fused, threads: calls x best time alone = share; "
              "time per call in that round):\n",
              size.name);
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    const Row& r = rows[i];
    const GemmCall& c = r.sc.shape;
    const double in_round_per_call = r.sc.seconds / static_cast<double>(r.sc.count);
    std::printf("  %5d x %5d x %5d  %s%s  beta %g%s%s  %d thr: %6lld x %8.3f ms = %5.1f%% (%.0f GFLOP/s); "
                "in the round %.3f ms (%.2fx)\n",
                c.m, c.n, c.k, c.trans_a ? "At" : "A", c.trans_b ? "Bt" : "B", c.beta,
                r.sc.has_bias ? " +bias" : "",
                c.act == Act::LeakyRelu ? " +lrelu" : c.act == Act::Relu ? " +relu" : "",
                r.sc.threads, static_cast<long long>(r.sc.count), r.alone_s * 1e3,
                100.0 * r.total_s / floor, flops_of(c) / r.alone_s / 1e9, in_round_per_call * 1e3,
                in_round_per_call / r.alone_s);
  }
}

int usage_error(const char* msg) {
  std::fprintf(stderr, "bench_round_floor: %s\nusage: bench_round_floor [--size demo|published|both] [--rounds N] [--top N]\n", msg);
  return 2;
}

}  // namespace
}  // namespace zscrgan

int main(int argc, char** argv) {
  using namespace zscrgan;
  std::string which = "both";
  int rounds = 0, top = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--size" || a == "--rounds" || a == "--top") && i + 1 >= argc)
      return usage_error((a + " needs a value").c_str());
    if (a == "--size") which = argv[++i];
    else if (a == "--rounds") rounds = std::atoi(argv[++i]);
    else if (a == "--top") top = std::atoi(argv[++i]);
    else return usage_error(("unknown argument '" + a + "'").c_str());
  }
  if (which != "demo" && which != "published" && which != "both")
    return usage_error("--size must be demo, published or both");
  if (rounds < 0) return usage_error("--rounds must be positive");
  auto be = make_cpu_backend();
  std::printf("CPU: %s; %s; OMP_WAIT_POLICY=%s\n", cpu_model().c_str(), be->description().c_str(),
              std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)");
  try {
    if (which != "published") run_size(kDemo, rounds > 0 ? rounds : 5, top);
    if (which != "demo") run_size(kPublished, rounds > 0 ? rounds : 2, top);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_round_floor: %s\n", e.what());
    return 1;
  }
  return 0;
}
