// Kernel benchmarks: one family per backend op at the published model's sizes (batch 32, text
// 1024, image 2048, gf 2048, df 1024, embed 1024, z 256; the critic's three evaluations
// stacked into 96 rows; an M-step chunk of 100 CSEM batches as 3200 rows; the optimizers over
// 20M parameters), for the CPU backend and, when a GPU is usable, the CUDA backend.
//
// Each benchmark reports achieved bandwidth ("GB/s", 1e9 bytes per second, counting every
// byte an op must read and write once) or arithmetic rate ("TFLOP/s"), so the figures can be
// held against the hardware's peaks.
//
// CUDA timing: Backend::time_seconds (CUDA events around one call on the backend's stream),
// after a warm-up, with the L2 cache flushed before every timed call: the figures are from device memory, as in a training step, where each op's inputs were
// usually evicted by the GEMMs in between. The smallest ops (a few hundred KB) are dominated by
// the ~2-4 us a kernel takes to start and drain; their GB/s is low by nature, and inside a
// captured graph the launch cost is what matters for them.
//
// Run: ./build/bench_kernels [--benchmark_filter=cuda] [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"

namespace zscrgan {
namespace {

constexpr int kBatch = 32, kText = 1024, kImage = 2048, kGf = 2048, kDf = 1024, kEmbed = 1024,
              kZ = 256;
constexpr int kCudaIterations = 200;  // per CUDA benchmark; each is ~0.1 ms with the flush
constexpr double kCpuMinTime = 0.1;   // seconds per CPU benchmark

// One backend of each kind, made on first use and kept; tf32 (CUDA only) is the CUDA
// backend's construction option, so the TF32 GEMMs run on a backend of their own.
Backend& backend(bool cuda, bool tf32 = false) {
  static std::unique_ptr<Backend> cpu, gpu, gpu_tf32;
  std::unique_ptr<Backend>& be = !cuda ? cpu : tf32 ? gpu_tf32 : gpu;
  if (!be) be = cuda ? make_cuda_backend(tf32) : make_cpu_backend();
  return *be;
}

// Device buffers for one benchmark, freed when it ends.
class Buffers {
 public:
  explicit Buffers(Backend& be) : be_(be) {}
  ~Buffers() {
    be_.synchronize();
    for (void* p : owned_) be_.deallocate(p);
  }
  // Values of about unit spread (times scale) from a cheap generator on the host: timings do
  // not depend on the values, and setting up 20M parameters must not take seconds.
  Tensor normal(int rows, int cols, float scale = 1.f) {
    Tensor t = raw(rows, cols);
    std::vector<float> host(t.numel());
    for (float& x : host) {
      state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
      x = scale * (static_cast<float>(state_ >> 40) * (3.4641016f / 16777216.f) - 1.7320508f);
    }
    be_.upload(t, host.data());
    return t;
  }
  Tensor constant(int rows, int cols, float value) {
    Tensor t = raw(rows, cols);
    be_.fill(t, value);
    return t;
  }
  Tensor raw(int rows, int cols) {
    void* p = be_.allocate(sizeof(float) * static_cast<size_t>(rows) * cols);
    owned_.push_back(p);
    return Tensor(static_cast<float*>(p), rows, cols, be_.device());
  }
  template <class I>
  I* ints(const std::vector<I>& host) {
    void* p = be_.allocate(sizeof(I) * host.size());
    owned_.push_back(p);
    be_.upload_bytes(p, host.data(), sizeof(I) * host.size());
    return static_cast<I*>(p);
  }

 private:
  Backend& be_;
  std::vector<void*> owned_;
  uint64_t state_ = 12345;
};

// Times op() and reports `bytes` and `flops` per call as rates.
void run(benchmark::State& state, Backend& be, const std::function<void()>& op, double bytes,
         double flops = 0) {
  for (int i = 0; i < 3; ++i) op();  // warm-up: first-call costs (cuBLAS heuristics, pages)
  be.synchronize();
  if (be.device() == Device::CUDA) {
    for (auto _ : state) state.SetIterationTime(be.time_seconds(op, /*cold_cache=*/true));
  } else {
    for (auto _ : state) op();
  }
  const double calls = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes * calls));
  if (bytes > 0) state.counters["GB/s"] = benchmark::Counter(bytes * calls * 1e-9, benchmark::Counter::kIsRate);
  if (flops > 0)
    state.counters["TFLOP/s"] = benchmark::Counter(flops * calls * 1e-12, benchmark::Counter::kIsRate);
}

constexpr double F = sizeof(float);

// ---- families -------------------------------------------------------------------------------

void bias_act_forward(benchmark::State& st, bool cuda, int rows, int cols) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor y = b.normal(rows, cols), bias = b.normal(1, cols);
  run(st, be, [&] { be.bias_act_forward(y, bias, Act::LeakyRelu); }, F * (2.0 * rows * cols + cols));
}

void bias_act_backward(benchmark::State& st, bool cuda, int rows, int cols) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor y = b.normal(rows, cols), dy = b.normal(rows, cols), d_pre = b.constant(rows, cols, 0.f),
         d_bias = b.constant(1, cols, 0.f);
  // y, dy and d_pre read, d_pre written; d_bias read and written.
  run(st, be, [&] { be.bias_act_backward(y, dy, d_pre, d_bias, Act::LeakyRelu); },
      F * (4.0 * rows * cols + 2.0 * cols));
}

void noise(benchmark::State& st, bool cuda, int rows, int cols, bool truncated) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor t = b.raw(rows, cols);
  uint64_t offset = 0;
  run(st, be, [&] {
    NoiseStream s{42, offset++};
    if (truncated)
      be.fill_truncated_normal(t, s);
    else
      be.fill_normal(t, s);
  }, F * rows * cols);
  st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * rows * cols);
}

void reparam(benchmark::State& st, bool cuda, int rows, int e, bool backward) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor h = b.normal(rows, 2 * e, 0.1f), eps = b.normal(rows, e), c = b.raw(rows, e);
  if (!backward) {
    // h's log_sigma half and mu half, eps read; c written.
    run(st, be, [&] { be.reparam_forward(h, eps, c); }, F * rows * e * 4.0);
  } else {
    Tensor dc = b.normal(rows, e), dh = b.constant(rows, 2 * e, 0.f);
    // dc, eps, h's log_sigma half read; dh read and written.
    run(st, be, [&] { be.reparam_backward(h, eps, dc, dh); }, F * rows * e * (3.0 + 4.0));
  }
}

void kl(benchmark::State& st, bool cuda, int rows, int e, bool backward) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor h = b.normal(rows, 2 * e, 0.1f), out = b.raw(1, 1), d_out = b.constant(1, 1, 1.f);
  if (!backward) {
    run(st, be, [&] { be.kl_forward(h, out); }, F * rows * 2.0 * e);
  } else {
    Tensor dh = b.constant(rows, 2 * e, 0.f);
    run(st, be, [&] { be.kl_backward(h, d_out, dh); }, F * rows * 2.0 * e * 3.0);
  }
}

void l1(benchmark::State& st, bool cuda, int rows, int cols, bool backward) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor x = b.normal(rows, cols), v = b.normal(rows, cols), out = b.raw(1, 1),
         d_out = b.constant(1, 1, 1.f);
  if (!backward) {
    run(st, be, [&] { be.l1_forward(x, v, out); }, F * rows * cols * 2.0);
  } else {
    Tensor dx = b.constant(rows, cols, 0.f), dv = b.constant(rows, cols, 0.f);
    run(st, be, [&] { be.l1_backward(x, v, d_out, dx, dv); }, F * rows * cols * 6.0);
  }
}

void cosine(benchmark::State& st, bool cuda, int rows, int cols, bool backward) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor a = b.normal(rows, cols), c = b.normal(rows, cols), out = b.raw(1, 1),
         d_out = b.constant(1, 1, 1.f);
  if (!backward) {
    run(st, be, [&] { be.cosine_mean_forward(a, c, out); }, F * rows * cols * 2.0);
  } else {
    Tensor da = b.constant(rows, cols, 0.f), dc = b.constant(rows, cols, 0.f);
    run(st, be, [&] { be.cosine_mean_backward(a, c, d_out, da, dc); }, F * rows * cols * 6.0);
  }
}

void rmsprop_clip(benchmark::State& st, bool cuda, int n) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor p = b.normal(1, n, 0.02f), g = b.normal(1, n, 0.01f), ms = b.constant(1, n, 1.f);
  RmsPropHyper h{2e-4f};
  h.clip = 0.01f;
  // p, g, ms read; p, ms written.
  run(st, be, [&] { be.rmsprop_update(p, g, ms, h); }, F * n * 5.0);
}

// A weight's gradient x^T dy (m x n from k rows) applied by RMSProp or Adam: formed and
// applied in one pass (weight_grad_rmsprop_update, weight_grad_adam_update) or as the GEMM into
// a gradient buffer, then rmsprop_update or adam_update. Each call takes the next of several
// weights, whose parameters, gradients and optimizer state (at least 3 weights and 256 MB in
// all: 3 x 100 MB at 4096 x 2048 with RMSProp, 21 x 12 MB at 1024 x 1024) outgrow the caches,
// as a round's weights do between two steps.
void weight_grad_update(benchmark::State& st, bool cuda, int m, int n, int k, bool adam, bool fused) {
  Backend& be = backend(cuda);
  Buffers b(be);
  const int arrays = adam ? 4 : 3;  // params, grads, then ms or m and v
  const double weight_bytes = double(arrays) * sizeof(float) * m * n;
  const int weights = std::max(3, static_cast<int>(std::ceil(256e6 / weight_bytes)));
  Tensor x = b.normal(k, m), dy = b.normal(k, n, 0.01f), powers = b.constant(1, 2, 0.5f);
  std::vector<Tensor> p(weights), g(weights), s1(weights), s2(weights);
  for (int i = 0; i < weights; ++i) {
    p[i] = b.normal(m, n, 0.02f);
    g[i] = b.constant(m, n, 0.f);
    s1[i] = b.constant(m, n, adam ? 0.f : 1.f);
    if (adam) s2[i] = b.constant(m, n, 0.f);
  }
  const RmsPropHyper rms{2e-4f};
  AdamHyper ad{0.002f};
  ad.advance_beta_powers = false;  // the powers stay away from 0 and 1 however long it runs
  int next = 0;
  // p and the state read and written, x and dy read; the unfused path also writes and reads g.
  run(st, be, [&] {
    const int i = next++ % weights;
    if (fused && adam) {
      be.weight_grad_adam_update(x, dy, p[i], g[i], s1[i], s2[i], powers, ad);
    } else if (fused) {
      be.weight_grad_rmsprop_update(x, dy, p[i], g[i], s1[i], rms);
    } else {
      be.gemm(true, false, 1.f, x, dy, 0.f, g[i]);
      if (adam)
        be.adam_update(p[i], g[i], s1[i], s2[i], powers, ad);
      else
        be.rmsprop_update(p[i], g[i], s1[i], rms);
    }
  }, F * (2.0 * (arrays - 1) * m * n + double(k) * (m + n)), 2.0 * m * n * k);
}

void adam(benchmark::State& st, bool cuda, int n) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor p = b.normal(1, n, 0.02f), g = b.normal(1, n, 0.01f), m = b.constant(1, n, 0.f),
         v = b.constant(1, n, 0.f), powers = b.constant(1, 2, 0.5f);
  // p, g, m, v read; p, m, v written.
  run(st, be, [&] { be.adam_update(p, g, m, v, powers, AdamHyper{0.002f}); }, F * n * 7.0);
}

void gather(benchmark::State& st, bool cuda, int rows, int cols, int table_rows) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor table = b.normal(table_rows, cols), dst = b.raw(rows, cols);
  std::vector<int32_t> idx(rows);
  for (int i = 0; i < rows; ++i) idx[i] = static_cast<int32_t>((i * 7919LL) % table_rows);
  const int32_t* d_idx = b.ints(idx);
  run(st, be, [&] { be.gather_rows(dst, table, IndexSpan{d_idx, rows}); }, F * rows * cols * 2.0);
}

// dst = src (copy) or dst += alpha src (axpy): the tape's concatenations and the gradients
// they hand back.
void copy_or_axpy(benchmark::State& st, bool cuda, int rows, int cols, bool axpy) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor src = b.normal(rows, cols), dst = b.constant(rows, cols, 0.f);
  // src read, dst written (axpy: and read).
  run(st, be, [&] { axpy ? be.axpy(dst, 0.5f, src) : be.copy(dst, src); },
      F * rows * cols * (axpy ? 3.0 : 2.0));
}

// C (m x n) = op(A) op(B), op(A) m x k. Bytes: A, B and C once (at batch 32 the weight
// dominates: the GEMM is a weight read).
void gemm(benchmark::State& st, bool cuda, bool ta, bool tb, int m, int n, int k, bool tf32) {
  Backend& be = backend(cuda, tf32);
  Buffers b(be);
  Tensor a = ta ? b.normal(k, m) : b.normal(m, k);
  Tensor w = tb ? b.normal(n, k) : b.normal(k, n);
  Tensor c = b.raw(m, n);
  run(st, be, [&] { be.gemm(ta, tb, 1.f, a, w, 0.f, c); },
      F * (double(m) * k + double(k) * n + double(m) * n), 2.0 * m * n * k);
}

void topk(benchmark::State& st, bool cuda, int queries, int gallery, int dim, int k) {
  Backend& be = backend(cuda);
  Buffers b(be);
  Tensor q = b.normal(queries, dim), g = b.normal(gallery, dim);
  std::vector<int64_t> index(static_cast<size_t>(queries) * k);
  std::vector<float> score(index.size());
  // A host-synchronous call (results land in host arrays): the events span the whole call,
  // the final download and wait included.
  run(st, be, [&] { be.topk_cosine(q, g, k, 0, index.data(), score.data()); },
      F * (double(queries) + gallery) * dim, 2.0 * queries * double(gallery) * dim);
}

// ---- registration -------------------------------------------------------------------------

std::string dims(std::initializer_list<long> v) {
  std::string s;
  for (long x : v) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

void register_all(bool cuda) {
  const std::string dev = cuda ? "cuda" : "cpu";
  // slow: a few CUDA iterations suffice (milliseconds each); cpu_iterations: a fixed count
  // instead of a minimum time, for the slowest CPU families.
  auto reg = [&](const std::string& family, const std::string& size,
                 std::function<void(benchmark::State&)> fn, bool slow = false,
                 int cpu_iterations = 0) {
    auto* bm = benchmark::RegisterBenchmark((family + "/" + dev + "/" + size).c_str(),
                                            [fn](benchmark::State& st) { fn(st); });
    bm->Unit(benchmark::kMicrosecond);
    if (cuda)
      bm->UseManualTime()->Iterations(slow ? 5 : kCudaIterations);
    else if (cpu_iterations > 0)
      bm->Iterations(cpu_iterations);
    else
      bm->MinTime(kCpuMinTime);
    if (!cuda) bm->UseRealTime();  // rates over wall time: the CPU backend runs OpenMP threads
  };
  // Layer outputs: condition and first generator layer (B x 2E = B x Gf = B x Dv at the
  // published size), the second generator layer (B x 2Gf), the stacked critic (3B x Df), an
  // M-step chunk of generated images (100 B x Dv).
  const std::pair<int, int> layers[] = {
      {kBatch, kGf}, {kBatch, 2 * kGf}, {3 * kBatch, kDf}, {100 * kBatch, kImage}};
  for (auto [r, c] : layers) {
    reg("bias_act_forward", dims({r, c}), [=](benchmark::State& s) { bias_act_forward(s, cuda, r, c); });
    reg("bias_act_backward", dims({r, c}), [=](benchmark::State& s) { bias_act_backward(s, cuda, r, c); });
  }
  for (auto [r, c] : {std::pair{kBatch, kZ}, std::pair{kBatch, kEmbed}, std::pair{100 * kBatch, kZ}}) {
    reg("fill_normal", dims({r, c}), [=](benchmark::State& s) { noise(s, cuda, r, c, false); });
    reg("fill_truncated_normal", dims({r, c}), [=](benchmark::State& s) { noise(s, cuda, r, c, true); });
  }
  for (bool bw : {false, true}) {
    const std::string suffix = bw ? "_backward" : "_forward";
    reg("reparam" + suffix, dims({kBatch, kEmbed}), [=](benchmark::State& s) { reparam(s, cuda, kBatch, kEmbed, bw); });
    reg("kl" + suffix, dims({kBatch, kEmbed}), [=](benchmark::State& s) { kl(s, cuda, kBatch, kEmbed, bw); });
    for (int r : {kBatch, 100 * kBatch})
      reg("l1" + suffix, dims({r, kImage}), [=](benchmark::State& s) { l1(s, cuda, r, kImage, bw); });
    reg("cosine_mean" + suffix, dims({kBatch, kEmbed}), [=](benchmark::State& s) { cosine(s, cuda, kBatch, kEmbed, bw); });
  }
  const int params = 20 << 20;  // ~ the generator + condition (~21M) or all networks (~27M)
  reg("rmsprop_clip", dims({params}), [=](benchmark::State& s) { rmsprop_clip(s, cuda, params); });
  // And at a size whose arrays (768 KB) stay in two cores' L2 between calls: the loop's own
  // rate, against which the size above shows what memory costs it.
  reg("rmsprop_clip", dims({1 << 16}), [=](benchmark::State& s) { rmsprop_clip(s, cuda, 1 << 16); });
  reg("adam", dims({params}), [=](benchmark::State& s) { adam(s, cuda, params); });
  // By RMSProp: the generator's largest weight gradient (gen2 and gen3, from the G step's
  // 2 x batch rows), the critic's image part (3 x batch rows) and its text part (the batch's
  // texts, once). By Adam: CSEM's weight (the M-step's x and x_wrong, 2 x batch rows).
  for (bool fused : {true, false}) {
    const char* family = fused ? "weight_grad_rmsprop" : "gemm_then_rmsprop";
    reg(family, dims({2 * kGf, kImage, 2 * kBatch}),
        [=](benchmark::State& s) { weight_grad_update(s, cuda, 2 * kGf, kImage, 2 * kBatch, false, fused); });
    reg(family, dims({kImage, kDf, 3 * kBatch}),
        [=](benchmark::State& s) { weight_grad_update(s, cuda, kImage, kDf, 3 * kBatch, false, fused); });
    reg(family, dims({kText, kDf, kBatch}),
        [=](benchmark::State& s) { weight_grad_update(s, cuda, kText, kDf, kBatch, false, fused); });
    reg(fused ? "weight_grad_adam" : "gemm_then_adam", dims({kImage, kEmbed, 2 * kBatch}),
        [=](benchmark::State& s) { weight_grad_update(s, cuda, kImage, kEmbed, 2 * kBatch, true, fused); });
  }
  reg("gather_rows", dims({kBatch, kImage}), [=](benchmark::State& s) { gather(s, cuda, kBatch, kImage, 12000); });
  reg("gather_rows", dims({100 * kBatch, kImage}), [=](benchmark::State& s) { gather(s, cuda, 100 * kBatch, kImage, 12000); });

  // A batch of images into the critic's stacked rows; the stacked critic's gradient.
  for (auto [r, c] : {std::pair{kBatch, kImage}, std::pair{3 * kBatch, kDf}}) {
    reg("copy", dims({r, c}), [=](benchmark::State& s) { copy_or_axpy(s, cuda, r, c, false); });
    reg("axpy", dims({r, c}), [=](benchmark::State& s) { copy_or_axpy(s, cuda, r, c, true); });
  }

  struct Gemm {
    const char* what;
    bool ta, tb;
    int m, n, k;
  };
  // Weights are stored (in, out): a layer is y = x W, its backward dX = dY W^T, dW = X^T dY.
  const Gemm gemms[] = {
      {"condition", false, false, kBatch, 2 * kEmbed, kText},
      {"gen1", false, false, kBatch, kGf, kEmbed + kZ},
      {"gen2", false, false, kBatch, 2 * kGf, kGf},
      {"gen3", false, false, kBatch, kImage, 2 * kGf},
      {"gen2_dx", false, true, kBatch, kGf, 2 * kGf},
      {"gen2_dw", true, false, kGf, 2 * kGf, kBatch},
      {"critic_stacked", false, false, 3 * kBatch, kDf, kImage + kText},
      {"csem_chunk", false, false, 100 * kBatch, kEmbed, kImage},
  };
  for (const Gemm& g : gemms)
    for (bool tf32 : {false, true}) {
      if (tf32 && !cuda) continue;
      reg(std::string("gemm_") + g.what + (tf32 ? "_tf32" : ""), dims({g.m, g.n, g.k}),
          [=](benchmark::State& s) { gemm(s, cuda, g.ta, g.tb, g.m, g.n, g.k, tf32); });
    }

  if (cuda) {
    // CUB's unseen split (about 2,900 texts and 2,900 images) and a large gallery.
    reg("topk_cosine", dims({2933, 2967, kEmbed, 50}),
        [=](benchmark::State& s) { topk(s, cuda, 2933, 2967, kEmbed, 50); }, true);
    reg("topk_cosine", dims({4096, 65536, kEmbed, 50}),
        [=](benchmark::State& s) { topk(s, cuda, 4096, 65536, kEmbed, 50); }, true);
  } else {
    reg("topk_cosine", dims({128, 4096, kEmbed, 50}),
        [=](benchmark::State& s) { topk(s, cuda, 128, 4096, kEmbed, 50); }, false, 2);
  }
}

}  // namespace
}  // namespace zscrgan

int main(int argc, char** argv) {
  zscrgan::register_all(false);
  const std::string reason = zscrgan::cuda_unavailable_reason();
  if (reason.empty())
    zscrgan::register_all(true);
  else
    std::fprintf(stderr, "bench_kernels: CUDA families not registered: %s\n", reason.c_str());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
