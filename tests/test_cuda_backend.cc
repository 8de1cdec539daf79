// The CUDA backend beyond plain op comparisons (those are the table in test_backend_ops.cc):
// the entry points, TF32 as a construction option, allocation failures, top-k over ties, tiles
// and offsets with its own limits and non-finite rows, captured steps replayed against eager
// calls, and faults recorded inside kernels. Comparisons are element by element with
// abs_tol + rel_tol |cpu| over the whole backing buffer, padding included. Without a usable GPU
// these tests skip and say why; the entry-point tests run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"
#include "backend/cpu/cpu_backend.h"

namespace zscrgan {
namespace {

using zscrgan::testing::all_close;

// ---- entry points: these run with or without a GPU ----------------------------------------

TEST(CudaEntryPoints, CompiledFlagMatchesTheBuild) {
#ifdef ZSCRGAN_HAVE_CUDA
  EXPECT_TRUE(cuda_backend_compiled());
#else
  EXPECT_FALSE(cuda_backend_compiled());
#endif
}

TEST(CudaEntryPoints, FactoryAgreesWithTheReason) {
  const std::string reason = cuda_unavailable_reason();
  if (reason.empty()) {
    std::unique_ptr<Backend> be;
    ASSERT_NO_THROW(be = make_cuda_backend());
    EXPECT_EQ(be->device(), Device::CUDA);
    EXPECT_NE(be->description().find("cuda"), std::string::npos) << be->description();
    return;
  }
  try {
    make_cuda_backend();
    FAIL() << "make_cuda_backend() succeeded although: " << reason;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos)
        << "the error should carry the reason; got: " << e.what();
  }
}

TEST(CudaEntryPoints, Tf32IsAConstructionOptionOfTheCudaBackend) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device: " << reason;
  EXPECT_NE(make_cuda_backend(true)->description().find("TF32 on"), std::string::npos);
  EXPECT_NE(make_cuda_backend(false)->description().find("TF32 off"), std::string::npos);
  EXPECT_NE(make_cuda_backend()->description().find("TF32 off"), std::string::npos);
}

// ---- the parity fixture -------------------------------------------------------------------

// One tensor on both backends with identical contents, padding included.
struct Pair {
  Tensor cpu, gpu;
  size_t span = 0;  // floats in the backing buffer (rows x ld)
};
Tensor T(const Pair& p, bool on_gpu) { return on_gpu ? p.gpu : p.cpu; }

template <class I>
struct IntPair {
  I* cpu = nullptr;
  I* gpu = nullptr;
  I* at(bool on_gpu) const { return on_gpu ? gpu : cpu; }
};

class CudaParity : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device, parity test skipped: " << reason;
    cpu_ = make_cpu_backend();
    gpu_ = make_cuda_backend();
  }
  void TearDown() override {
    if (!gpu_) return;
    gpu_->synchronize();
    for (void* p : allocations_) gpu_->deallocate(p);
  }

  Pair alloc(int rows, int cols, int ld = 0) {
    ld = std::max(ld, cols);
    Pair p;
    p.span = std::max<size_t>(1, static_cast<size_t>(rows) * ld);
    host_.emplace_back(p.span, 0.f);
    float* d = static_cast<float*>(gpu_->allocate(p.span * sizeof(float)));
    allocations_.push_back(d);
    p.cpu = Tensor(host_.back().data(), rows, cols, ld, Device::CPU);
    p.gpu = Tensor(d, rows, cols, ld, Device::CUDA);
    return p;
  }
  // N(offset, scale^2) everywhere in the buffer.
  Pair random(int rows, int cols, int ld = 0, float scale = 1.f, float offset = 0.f) {
    Pair p = alloc(rows, cols, ld);
    std::normal_distribution<float> n(0.f, 1.f);
    for (size_t i = 0; i < p.span; ++i) p.cpu.data[i] = offset + scale * n(rng_);
    push(p);
    return p;
  }
  Pair constant(int rows, int cols, float value, int ld = 0) {
    Pair p = alloc(rows, cols, ld);
    std::fill(p.cpu.data, p.cpu.data + p.span, value);
    push(p);
    return p;
  }
  Pair scalar(float v) { return constant(1, 1, v); }
  void push(const Pair& p) { gpu_->upload_bytes(p.gpu.data, p.cpu.data, p.span * sizeof(float)); }

  template <class I>
  IntPair<I> ints(const std::vector<I>& values) {
    IntPair<I> p;
    int_host_.emplace_back(values.size() * sizeof(I));
    std::memcpy(int_host_.back().data(), values.data(), values.size() * sizeof(I));
    p.cpu = reinterpret_cast<I*>(int_host_.back().data());
    p.gpu = static_cast<I*>(gpu_->allocate(values.size() * sizeof(I)));
    allocations_.push_back(p.gpu);
    gpu_->upload_bytes(p.gpu, values.data(), values.size() * sizeof(I));
    return p;
  }
  template <class I>
  std::vector<I> gpu_ints(const IntPair<I>& p, size_t n) {
    std::vector<I> out(n);
    gpu_->download_bytes(out.data(), p.gpu, n * sizeof(I));
    return out;
  }

  std::vector<float> cpu_values(const Pair& p) { return {p.cpu.data, p.cpu.data + p.span}; }
  std::vector<float> gpu_values(const Pair& p) {
    std::vector<float> out(p.span);
    gpu_->download_bytes(out.data(), p.gpu.data, p.span * sizeof(float));
    return out;
  }
  ::testing::AssertionResult agree(const Pair& p, double abs_tol, double rel_tol,
                                   const std::string& what) {
    return all_close(cpu_values(p), gpu_values(p), abs_tol, rel_tol, what);
  }

  // Runs f on the CPU backend with the CPU tensors, then on the GPU with the GPU tensors.
  void on_both(const std::function<void(Backend&, bool)>& f) {
    f(*cpu_, false);
    f(*gpu_, true);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
  std::mt19937 rng_{20240611};
  std::deque<std::vector<float>> host_;
  std::deque<std::vector<char>> int_host_;
  std::vector<void*> allocations_;
};

// ---- TF32: a backend made with the option ---------------------------------------------------

TEST_F(CudaParity, GemmTf32IsCloseButOptional) {
  Pair a = random(64, 512, 0, 0.1f), b = random(512, 96, 0, 0.1f), c = random(64, 96);
  // The tensors live on the current device, which the TF32 backend shares.
  std::unique_ptr<Backend> tf32 = make_cuda_backend(true);
  EXPECT_NE(tf32->description().find("TF32 on"), std::string::npos) << tf32->description();
  cpu_->gemm(false, false, 1.f, a.cpu, b.cpu, 0.f, c.cpu);
  tf32->gemm(false, false, 1.f, a.gpu, b.gpu, 0.f, c.gpu);
  tf32->synchronize();
  EXPECT_TRUE(agree(c, 2e-2, 1e-2, "gemm in TF32"));
}

// ---- allocation -------------------------------------------------------------------------------

TEST_F(CudaParity, AllocationFailureNamesTheSize) {
  try {
    gpu_->allocate(size_t(1) << 50);
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(size_t(1) << 50)), std::string::npos) << what;
    EXPECT_NE(what.find("MiB free"), std::string::npos) << what;
  }
  Pair still_works = random(3, 3);  // the failure is not sticky
  EXPECT_TRUE(agree(still_works, 0, 0, "after a failed allocation"));
}

// ---- top-k retrieval ----------------------------------------------------------------------------

// Top-k lists against a double reference are cases of the op table (test_backend_ops.cc);
// here, the data checks and TF32.

TEST_F(CudaParity, TopkRejectsWhatTheCpuRejects) {
  Pair queries = random(4, 8), gallery = random(50, 8, 10);
  gallery.cpu.data[17 * 10 + 3] = NAN;
  gallery.cpu.data[33 * 10 + 0] = INFINITY;
  push(gallery);
  std::vector<int64_t> index(4 * 1025);
  std::vector<float> score(index.size());
  auto message = [&](Backend& be, bool g, int k, int64_t offset) -> std::string {
    try {
      be.topk_cosine(T(queries, g), T(gallery, g), k, offset, index.data(), score.data());
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string cpu_nan = message(*cpu_, false, 5, 0), gpu_nan = message(*gpu_, true, 5, 0);
  EXPECT_NE(cpu_nan.find("gallery row 17"), std::string::npos) << cpu_nan;
  EXPECT_EQ(gpu_nan, cpu_nan);
  EXPECT_EQ(message(*gpu_, true, 0, 0), message(*cpu_, false, 0, 0));
  EXPECT_EQ(message(*gpu_, true, 5, -1), message(*cpu_, false, 5, -1));
  EXPECT_NE(message(*gpu_, true, 1025, 0).find("top_k 1025 is above the 1024"), std::string::npos);
}

// ---- capture ----------------------------------------------------------------------------------

// A short step: noise from the step counter, a GEMM, a fused layer, a loss stored in the
// counter's slot, a stepped gather, a clipped RMSProp update, an accumulation, the counter.
struct StepBuffers {
  Pair z, w, y, bias, target, loss, slots, table, gathered, grad, ms, acc;
  IntPair<int32_t> rows;
  IntPair<int64_t> counter;
};

TEST_F(CudaParity, CapturedStepReplaysLikeEagerCalls) {
  const int b = 8, in = 24, out = 40, steps = 6;
  auto make_state = [&](uint32_t seed) {
    rng_.seed(seed);
    StepBuffers s;
    s.z = random(b, in, in + 3);
    s.w = random(in, out, 0, 0.1f);
    s.y = random(b, out, out + 5);
    s.bias = random(1, out);
    s.target = random(b, out);
    s.loss = scalar(0.f);
    s.slots = constant(1, steps, -1.f);
    s.table = random(30, out);
    s.gathered = random(b, out, out + 2);
    s.grad = random(in, out, 0, 0.3f);
    s.ms = constant(in, out, 1.f);
    s.acc = constant(b, out, 0.f);
    std::vector<int32_t> rows(size_t(steps) * b);
    std::uniform_int_distribution<int> pick(0, 29);
    for (auto& r : rows) r = pick(rng_);
    s.rows = ints(rows);
    s.counter = ints(std::vector<int64_t>{0});
    return s;
  };
  auto step = [&](Backend& be, const StepBuffers& s, bool g) {
    be.fill_normal(T(s.z, g), NoiseStream{7, 100, s.counter.at(g), 1000});
    be.gemm(false, false, 1.f, T(s.z, g), T(s.w, g), 0.f, T(s.y, g));
    be.bias_act_forward(T(s.y, g), T(s.bias, g), Act::LeakyRelu);
    be.l1_forward(T(s.y, g), T(s.target, g), T(s.loss, g));
    be.store_scalar(T(s.loss, g), T(s.slots, g), 0, s.counter.at(g), 1);
    be.gather_rows(T(s.gathered, g), T(s.table, g), IndexSpan{s.rows.at(g), b, s.counter.at(g), b});
    RmsPropHyper h{0.01f};
    h.clip = 0.05f;
    be.rmsprop_update(T(s.w, g), T(s.grad, g), T(s.ms, g), h);
    be.axpy(T(s.acc, g), 1.f, T(s.y, g));
    be.increment_counter(s.counter.at(g));
  };
  StepBuffers eager = make_state(99), captured = make_state(99);
  for (int i = 0; i < steps; ++i) {
    step(*cpu_, eager, false);
    step(*gpu_, eager, true);  // also warms cuBLAS up before the capture
  }
  ASSERT_TRUE(gpu_->can_capture());
  gpu_->begin_capture();
  step(*gpu_, captured, true);
  std::unique_ptr<CapturedProgram> program = gpu_->end_capture();
  ASSERT_TRUE(program);
  for (int i = 0; i < steps; ++i) program->replay();
  gpu_->synchronize();

  EXPECT_EQ(gpu_ints(captured.counter, 1)[0], steps);
  EXPECT_EQ(gpu_ints(eager.counter, 1)[0], steps);
  const std::pair<const char*, Pair StepBuffers::*> fields[] = {
      {"z", &StepBuffers::z},       {"w", &StepBuffers::w},         {"y", &StepBuffers::y},
      {"loss", &StepBuffers::loss}, {"slots", &StepBuffers::slots}, {"gathered", &StepBuffers::gathered},
      {"ms", &StepBuffers::ms},     {"acc", &StepBuffers::acc}};
  for (const auto& [name, field] : fields) {
    EXPECT_TRUE(all_close(gpu_values(eager.*field), gpu_values(captured.*field), 1e-6, 1e-6,
                          std::string("replayed vs eager cuda: ") + name));
    EXPECT_TRUE(agree(eager.*field, 1e-4, 1e-4, std::string("eager cuda vs cpu: ") + name));
  }
  // Every replay logged its own loss.
  const std::vector<float> slots = gpu_values(captured.slots);
  for (int i = 0; i < steps; ++i) EXPECT_NE(slots[i], -1.f) << "slot " << i;
}

// ---- faults inside kernels ------------------------------------------------------------------

TEST_F(CudaParity, BadIndexInsideAKernelIsAnErrorAtTheNextSyncAndTheBackendLivesOn) {
  Pair table = random(40, 16), dst = random(4, 16);
  IntPair<int32_t> rows = ints(std::vector<int32_t>{0, 57, 3, -1});
  gpu_->gather_rows(dst.gpu, table.gpu, IndexSpan{rows.gpu, 4});
  try {
    gpu_->synchronize();
    ADD_FAILURE() << "an out-of-range row index was not reported";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("gather_rows"), std::string::npos) << m;
    EXPECT_TRUE(m.find("57") != std::string::npos || m.find("-1") != std::string::npos) << m;
  }
  // A gather of no columns reads no values but still checks its indices, as on the CPU.
  Pair table0 = random(40, 0), dst0 = random(4, 0);
  gpu_->gather_rows(dst0.gpu, table0.gpu, IndexSpan{rows.gpu, 4});
  try {
    gpu_->synchronize();
    ADD_FAILURE() << "an out-of-range row index of a zero-width gather was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gather_rows"), std::string::npos) << e.what();
  }
  // The context is not poisoned: the next ops run and report nothing.
  Pair t = random(3, 5);
  gpu_->fill(t.gpu, 2.f);
  EXPECT_NO_THROW(gpu_->synchronize());
  EXPECT_EQ(gpu_values(t)[0], 2.f);
  // A slot read through a counter (4: slot 1 + 4 * 2 = 9 of 4) is the kernel's to check; without
  // a counter Backend::store_scalar rejects it at the call.
  Pair slots = constant(1, 4, 0.f), value = scalar(1.f);
  IntPair<int64_t> counter = ints(std::vector<int64_t>{4});
  gpu_->store_scalar(value.gpu, slots.gpu, 1, counter.gpu, 2);
  try {
    gpu_values(slots);
    ADD_FAILURE() << "an out-of-range slot was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("store_scalar"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(gpu_->synchronize());
}

// ---- retrieval ------------------------------------------------------------------------------

TEST_F(CudaParity, TopkStaysFp32WhenTf32IsOn) {
  Pair queries = random(20, 1024), gallery = random(5000, 1024);
  const int k = 50;
  auto run = [&](bool tf32) {
    std::unique_ptr<Backend> be = make_cuda_backend(tf32);
    std::vector<int64_t> index(20 * k);
    std::vector<float> score(index.size());
    be->topk_cosine(queries.gpu, gallery.gpu, k, 0, index.data(), score.data());
    return std::make_pair(index, score);
  };
  const auto fp32 = run(false), with_tf32 = run(true);
  EXPECT_EQ(fp32.first, with_tf32.first);
  EXPECT_EQ(fp32.second, with_tf32.second);
}

TEST_F(CudaParity, TopkNanQueryIsAnErrorNamingTheRow) {
  Pair queries = random(6, 32), gallery = random(100, 32);
  queries.cpu.data[4 * 32 + 7] = NAN;
  push(queries);
  std::vector<int64_t> index(6 * 5);
  std::vector<float> score(index.size());
  auto message = [&](Backend& be, bool g) -> std::string {
    try {
      be.topk_cosine(T(queries, g), T(gallery, g), 5, 0, index.data(), score.data());
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string cpu = message(*cpu_, false), gpu = message(*gpu_, true);
  EXPECT_NE(cpu.find("query row 4"), std::string::npos) << cpu;
  EXPECT_EQ(gpu, cpu);
}

// ---- capture: the reductions, Adam and the fused backward in a replayed step ----------------

struct ReductionStepBuffers {
  Pair x, y, bias, dy, d_pre, d_bias, a, b, cos_out, cos_da, cos_db, mean_out, terms_out, d_out,
      p, grad, m, v, powers, slots;
  IntPair<int64_t> counter;
};

TEST_F(CudaParity, CapturedReductionsAdamAndFusedBackwardReplayLikeEagerCalls) {
  const int rows = 1000, cols = 129, steps = 5, n = 10007;
  auto make_state = [&](uint32_t seed) {
    rng_.seed(seed);
    ReductionStepBuffers s;
    s.x = random(rows, cols, cols + 3);
    s.y = random(rows, cols, cols + 7);
    s.bias = random(1, cols);
    s.dy = random(rows, cols);
    s.d_pre = constant(rows, cols, 0.f);
    s.d_bias = constant(1, cols, 0.f);
    s.a = random(2000, 64);
    s.b = random(2000, 64, 70);
    s.cos_out = scalar(0.f);
    s.cos_da = constant(2000, 64, 0.f);
    s.cos_db = constant(2000, 64, 0.f);
    s.mean_out = scalar(0.f);
    s.terms_out = scalar(0.f);
    s.d_out = scalar(0.8f);
    s.p = random(1, n, 0, 0.02f);
    s.grad = random(1, n, 0, 0.5f);
    s.m = constant(1, n, 0.f);
    s.v = constant(1, n, 0.f);
    s.powers = alloc(1, 2);
    s.powers.cpu.data[0] = 0.5f;
    s.powers.cpu.data[1] = 0.999f;
    push(s.powers);
    s.slots = constant(1, steps, -1.f);
    s.counter = ints(std::vector<int64_t>{0});
    return s;
  };
  auto step = [&](Backend& be, const ReductionStepBuffers& s, bool g) {
    be.bias_act_forward(T(s.y, g), T(s.bias, g), Act::LeakyRelu);
    be.bias_act_backward(T(s.y, g), T(s.dy, g), T(s.d_pre, g), T(s.d_bias, g), Act::LeakyRelu);
    be.mean_forward(T(s.x, g), T(s.mean_out, g));
    be.cosine_mean_forward(T(s.a, g), T(s.b, g), T(s.cos_out, g));
    be.cosine_mean_backward(T(s.a, g), T(s.b, g), T(s.d_out, g), T(s.cos_da, g), T(s.cos_db, g));
    ScalarTerms t;
    t.n = 2;
    t.value[0] = T(s.mean_out, g).data;
    t.value[1] = T(s.cos_out, g).data;
    t.weight[0] = 0.5f;
    t.weight[1] = -2.f;
    t.constant = 1.f;
    be.combine_forward(t, T(s.terms_out, g));
    be.store_scalar(T(s.terms_out, g), T(s.slots, g), 0, s.counter.at(g), 1);
    be.adam_update(T(s.p, g), T(s.grad, g), T(s.m, g), T(s.v, g), T(s.powers, g), AdamHyper{0.002f});
    be.axpy(T(s.x, g), 0.01f, T(s.x, g));  // the next replay reduces other values
    be.increment_counter(s.counter.at(g));
  };
  ReductionStepBuffers eager = make_state(7), captured = make_state(7);
  for (int i = 0; i < steps; ++i) {
    step(*cpu_, eager, false);
    step(*gpu_, eager, true);
  }
  gpu_->begin_capture();
  step(*gpu_, captured, true);
  std::unique_ptr<CapturedProgram> program = gpu_->end_capture();
  ASSERT_TRUE(program);
  for (int i = 0; i < steps; ++i) program->replay();
  gpu_->synchronize();
  const std::pair<const char*, Pair ReductionStepBuffers::*> fields[] = {
      {"y", &ReductionStepBuffers::y},           {"d_pre", &ReductionStepBuffers::d_pre},
      {"d_bias", &ReductionStepBuffers::d_bias}, {"cos_da", &ReductionStepBuffers::cos_da},
      {"cos_db", &ReductionStepBuffers::cos_db}, {"p", &ReductionStepBuffers::p},
      {"m", &ReductionStepBuffers::m},           {"v", &ReductionStepBuffers::v},
      {"powers", &ReductionStepBuffers::powers}, {"slots", &ReductionStepBuffers::slots}};
  for (const auto& [name, field] : fields) {
    // The same kernels in the same order: replay equals eager to the bit.
    EXPECT_TRUE(all_close(gpu_values(eager.*field), gpu_values(captured.*field), 0, 0,
                          std::string("replayed vs eager cuda: ") + name));
    EXPECT_TRUE(agree(eager.*field, 1e-4, 1e-4, std::string("eager cuda vs cpu: ") + name));
  }
}

}  // namespace
}  // namespace zscrgan
