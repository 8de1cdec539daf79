// Finite-difference gradient checks: every op, and the three losses (D, G, CSEM) with respect
// to every parameter tensor and every input that carries a gradient. The negative controls
// show the checker fails when a backward is wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "test_support.h"
#include "model/model.h"
#include "autograd/ops.h"

namespace zscrgan {
namespace {

using testing::CpuContext;
using testing::describe;
using testing::grad_check;

// A smooth scalar of a tensor with a different coefficient for every element, so that a
// gradient error in any one element shows: cos(out, R) + mean(out W_R).
Var scalarize(CpuContext& ctx, const Var& out, const Tensor& r, const Tensor& wr) {
  Var c = ops::cosine_rows(ctx.tape, out, constant(r));
  Var m = ops::mean(ctx.tape, ops::matmul(ctx.tape, {out}, constant(wr)));
  return ops::combine(ctx.tape, {c, m}, {0.7f, 1.3f});
}

struct Probe {
  Tensor r, wr;
};
Probe make_probe(CpuContext& ctx, int rows, int cols) { return {ctx.random(rows, cols), ctx.random(cols, 3)}; }

#define EXPECT_GRAD_OK(report) EXPECT_TRUE((report).ok()) << describe(report)

TEST(GradCheck, MatmulOnePart) {
  CpuContext ctx;
  Var x = ctx.param(5, 7), w = ctx.param(7, 4);
  Probe p = make_probe(ctx, 5, 4);
  auto f = [&] { return scalarize(ctx, ops::matmul(ctx.tape, {x}, w), p.r, p.wr); };
  EXPECT_GRAD_OK(grad_check(ctx, f, x.value, x.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, w.value, w.grad));
}

TEST(GradCheck, MatmulTwoPartsIsConcatenationFree) {
  CpuContext ctx;
  Var a = ctx.param(4, 3), b = ctx.param(4, 5), w = ctx.param(8, 6);
  Probe p = make_probe(ctx, 4, 6);
  auto f = [&] { return scalarize(ctx, ops::matmul(ctx.tape, {a, b}, w), p.r, p.wr); };
  EXPECT_GRAD_OK(grad_check(ctx, f, a.value, a.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, b.value, b.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, w.value, w.grad));
}

class BiasActGrad : public ::testing::TestWithParam<Act> {};
TEST_P(BiasActGrad, InputAndBias) {
  CpuContext ctx;
  Var x = ctx.param(6, 5), b = ctx.param(1, 5);
  Probe p = make_probe(ctx, 6, 5);
  // bias_act works in place, so each evaluation starts from a copy of x.
  auto f = [&] {
    Var copy_of_x = ops::concat_rows(ctx.tape, {x});
    return scalarize(ctx, ops::bias_act(ctx.tape, copy_of_x, b, GetParam()), p.r, p.wr);
  };
  EXPECT_GRAD_OK(grad_check(ctx, f, x.value, x.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, b.value, b.grad));
}
INSTANTIATE_TEST_SUITE_P(Acts, BiasActGrad, ::testing::Values(Act::None, Act::LeakyRelu, Act::Relu));

TEST(GradCheck, Dense) {
  CpuContext ctx;
  Var x = ctx.param(5, 6), w = ctx.param(6, 4, 0.5f), b = ctx.param(1, 4);
  Probe p = make_probe(ctx, 5, 4);
  auto f = [&] { return scalarize(ctx, ops::dense(ctx.tape, x, w, b, Act::LeakyRelu), p.r, p.wr); };
  EXPECT_GRAD_OK(grad_check(ctx, f, x.value, x.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, w.value, w.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, b.value, b.grad));
}

TEST(GradCheck, Reparam) {
  CpuContext ctx;
  Var h = ctx.param(5, 8, 0.5f);
  Tensor eps = ctx.random(5, 4);
  Probe p = make_probe(ctx, 5, 4);
  auto f = [&] { return scalarize(ctx, ops::reparam(ctx.tape, h, eps), p.r, p.wr); };
  EXPECT_GRAD_OK(grad_check(ctx, f, h.value, h.grad));
}

TEST(GradCheck, ConcatAndSlices) {
  CpuContext ctx;
  Var a = ctx.param(4, 3), b = ctx.param(4, 5), c = ctx.param(2, 8);
  Probe p = make_probe(ctx, 4, 5);
  auto f = [&] {
    Var ab = ops::concat_cols(ctx.tape, a, b);           // 4 x 8
    Var abc = ops::concat_rows(ctx.tape, {ab, c});       // 6 x 8
    Var s = ops::slice_cols(ops::slice_rows(abc, 1, 4), 2, 5);  // 4 x 5
    return scalarize(ctx, s, p.r, p.wr);
  };
  EXPECT_GRAD_OK(grad_check(ctx, f, a.value, a.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, b.value, b.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, c.value, c.grad));
}

TEST(GradCheck, PublishedKl) {
  CpuContext ctx;
  Var h = ctx.param(5, 8, 0.5f);
  auto f = [&] { return ops::kl_published(ctx.tape, h); };
  EXPECT_GRAD_OK(grad_check(ctx, f, h.value, h.grad));
}

TEST(GradCheck, L1Rows) {
  CpuContext ctx;
  Var x = ctx.param(5, 6), v = ctx.param(5, 6);
  auto f = [&] { return ops::l1_rows(ctx.tape, x, v); };
  EXPECT_GRAD_OK(grad_check(ctx, f, x.value, x.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, v.value, v.grad));
}

TEST(GradCheck, MeanCosineSoftplusCombine) {
  CpuContext ctx;
  Var a = ctx.param(5, 6), b = ctx.param(5, 6), s = ctx.param(1, 1);
  auto f = [&] {
    Var m = ops::mean(ctx.tape, a);
    Var c = ops::cosine_rows(ctx.tape, a, b);
    return ops::combine(ctx.tape, {ops::softplus(ctx.tape, ops::combine(ctx.tape, {c, s}, {1.f, 2.f})), m},
                        {1.5f, -0.5f}, 2.f);
  };
  EXPECT_GRAD_OK(grad_check(ctx, f, a.value, a.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, b.value, b.grad));
  EXPECT_GRAD_OK(grad_check(ctx, f, s.value, s.grad));
}

// ---- the three losses ----

struct SmallModel {
  CpuContext ctx;
  ModelDims dims{6, 8, 4, 3, 5, 7};  // Dt, Dv, E, Z, Gf, Df
  Model model{*ctx.be, dims};
  int b = 4;
  SmallModel() {
    model.initialize(3);
    // Larger weights than the 0.02 of training, so every gradient is well above float noise.
    for (const NamedTensor& t : model.parameter_tensors()) {
      Tensor r = ctx.random(t.tensor.rows, t.tensor.cols, 0.4f, 0.05f);
      ctx.be->copy(t.tensor, r);
    }
  }
  std::vector<std::pair<std::string, Var>> params(std::initializer_list<Linear*> layers,
                                                  std::initializer_list<const char*> names) {
    std::vector<std::pair<std::string, Var>> out;
    auto n = names.begin();
    for (Linear* l : layers) {
      out.push_back({std::string(*n) + ".w", l->w});
      out.push_back({std::string(*n) + ".b", l->b});
      ++n;
    }
    return out;
  }
};

TEST(GradCheck, CriticLossEveryParameterAndTheFakeImages) {
  SmallModel s;
  Model& m = s.model;
  Tensor real = s.ctx.random(s.b, 8, 1.f, 0.5f), wrong = s.ctx.random(s.b, 8, 1.f, 0.5f);
  Tensor texts = s.ctx.random(s.b, 6);
  Var fake = s.ctx.param(s.b, 8);
  auto f = [&] { return critic_loss(s.ctx.tape, m.critic1, m.critic2, constant(real), fake, constant(wrong), constant(texts)); };
  for (auto& [name, v] : s.params({&m.critic1, &m.critic2}, {"critic1", "critic2"})) {
    if (name == "critic2.b") continue;  // exactly zero gradient: see CriticOutputBiasGradientIsZero
    SCOPED_TRACE(name);
    EXPECT_GRAD_OK(grad_check(s.ctx, f, v.value, v.grad));
  }
  SCOPED_TRACE("fake images");
  EXPECT_GRAD_OK(grad_check(s.ctx, f, fake.value, fake.grad));
}

TEST(GradCheck, CriticOutputBiasGradientIsZero) {
  SmallModel s;
  Model& m = s.model;
  Tensor real = s.ctx.random(s.b, 8), fake = s.ctx.random(s.b, 8), wrong = s.ctx.random(s.b, 8);
  Tensor texts = s.ctx.random(s.b, 6);
  s.ctx.be->fill(m.critic_group.grads, 0.f);
  Var loss = critic_loss(s.ctx.tape, m.critic1, m.critic2, constant(real), constant(fake), constant(wrong), constant(texts));
  s.ctx.tape.backward(loss);
  EXPECT_EQ(m.critic2.b.grad.data[0], 0.f);  // (1/2 + 1/2 - 1) x sum: cancels exactly
  float nonzero = 0;
  for (int j = 0; j < m.critic1.b.grad.cols; ++j) nonzero += std::fabs(m.critic1.b.grad.data[j]);
  EXPECT_GT(nonzero, 0.f);
}

TEST(GradCheck, CsemLossEveryParameterAndInputs) {
  SmallModel s;
  Model& m = s.model;
  Var x = s.ctx.param(s.b, 8), xw = s.ctx.param(s.b, 8), c1 = s.ctx.param(s.b, 4);
  auto f = [&] { return csem_loss(s.ctx.tape, m.csem, x, xw, c1); };
  for (auto& [name, v] : s.params({&m.csem}, {"csem"})) {
    SCOPED_TRACE(name);
    EXPECT_GRAD_OK(grad_check(s.ctx, f, v.value, v.grad));
  }
  for (auto* in : {&x, &xw, &c1}) EXPECT_GRAD_OK(grad_check(s.ctx, f, in->value, in->grad));
}

TEST(GradCheck, GeneratorLossEveryParameterThroughFrozenCriticAndCsem) {
  SmallModel s;
  Model& m = s.model;
  const int b = s.b;
  Tensor texts = s.ctx.random(2 * b, 6), eps = s.ctx.random(2 * b, 4, 0.5f), z = s.ctx.random(2 * b, 3);
  // Images at a distance >= 0.5 from the generated ones keep |x - v| away from its kink.
  Tensor real = s.ctx.random(b, 8), wrong = s.ctx.random(b, 8);
  {
    Tape::NoRecord nr(s.ctx.tape);
    Conditioned cd = condition_forward(s.ctx.tape, m.condition, constant(texts), eps);
    Var x = generator_forward(s.ctx.tape, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
    for (Tensor* v : {&real, &wrong})
      for (int r = 0; r < b; ++r)
        for (int c = 0; c < 8; ++c) {
          float& e = v->data[r * 8 + c];
          e = x.value.data[r * x.value.ld + c] + (e >= 0 ? 0.5f + e : -0.5f + e);
        }
  }
  LossWeights w{2.f, 1.f};
  auto f = [&] {
    GeneratorInputs in{constant(real), constant(wrong), constant(texts), eps, z};
    return generator_loss(s.ctx.tape, m.condition, m.gen1, m.gen2, m.gen3, frozen(m.critic1),
                          frozen(m.critic2), frozen(m.csem), in, w).total;
  };
  for (auto& [name, v] : s.params({&m.condition, &m.gen1, &m.gen2, &m.gen3},
                                  {"condition", "gen1", "gen2", "gen3"})) {
    SCOPED_TRACE(name);
    // A smaller step: three LeakyReLU layers, a ReLU and two L1 terms make kinks dense.
    EXPECT_GRAD_OK(grad_check(s.ctx, f, v.value, v.grad, 48, 1e-3f));
  }
  // The frozen networks received nothing.
  s.ctx.be->fill(m.critic_group.grads, 0.f);
  s.ctx.be->fill(m.csem_group.grads, 0.f);
  s.ctx.tape.backward(f());
  for (size_t i = 0; i < m.critic_group.grads.numel(); ++i) ASSERT_EQ(m.critic_group.grads.data[i], 0.f);
  for (size_t i = 0; i < m.csem_group.grads.numel(); ++i) ASSERT_EQ(m.csem_group.grads.data[i], 0.f);
}

// ---- negative controls: a wrong backward must fail the check ----

// The published KL with its backward off by the classic dropped factor of 0.5.
void kl_backward_missing_half(Backend& be, const Node& n) {
  be.kl_backward(n.in[0].value, n.out.grad, n.in[0].grad);
  be.kl_backward(n.in[0].value, n.out.grad, n.in[0].grad);
}
Var kl_with_wrong_backward(Tape& tape, const Var& h) {
  Var out = tape.new_var(1, 1, true);
  tape.backend().kl_forward(h.value, out.value);
  Node n;
  n.backward = kl_backward_missing_half;
  n.in[0] = h;
  n.n_in = 1;
  n.out = out;
  if (tape.recording()) tape.record(n);
  return out;
}

TEST(GradCheckNegativeControl, DroppedFactorOfHalfInKlFails) {
  CpuContext ctx;
  Var h = ctx.param(5, 8, 0.5f);
  auto f = [&] { return kl_with_wrong_backward(ctx.tape, h); };
  const auto rep = grad_check(ctx, f, h.value, h.grad);
  EXPECT_FALSE(rep.ok()) << "the checker accepted a gradient off by 2x: " << describe(rep);
  EXPECT_GT(rep.failed, rep.checked / 2);
}

// LeakyReLU backward with the slope forgotten on the negative side (ReLU's derivative).
void bias_lrelu_backward_as_relu(Backend& be, const Node& n) {
  be.bias_act_backward(n.out.value, n.out.grad, n.in[0].grad, n.in[1].grad, Act::Relu);
}
TEST(GradCheckNegativeControl, LeakySlopeForgottenInBackwardFails) {
  CpuContext ctx;
  Var x = ctx.param(6, 5), b = ctx.param(1, 5);
  Probe p = make_probe(ctx, 6, 5);
  auto f = [&] {
    Var y = ops::concat_rows(ctx.tape, {x});
    ctx.tape.backend().bias_act_forward(y.value, b.value, Act::LeakyRelu);
    Var out{y.value, ctx.arena.alloc(6, 5)};
    ctx.be->fill(out.grad, 0.f);
    Node n;
    n.backward = bias_lrelu_backward_as_relu;
    n.in[0] = y;
    n.in[1] = b;
    n.n_in = 2;
    n.out = out;
    if (ctx.tape.recording()) ctx.tape.record(n);
    return scalarize(ctx, out, p.r, p.wr);
  };
  const auto rep = grad_check(ctx, f, x.value, x.grad);
  EXPECT_FALSE(rep.ok()) << describe(rep);
}

}  // namespace
}  // namespace zscrgan

namespace zscrgan {
namespace {
TEST(GradCheck, AddTiled) {
  testing::CpuContext ctx;
  Var a = ctx.param(6, 4), b = ctx.param(2, 4);
  Probe p = make_probe(ctx, 6, 4);
  auto f = [&] {
    Var a_copy = ops::concat_rows(ctx.tape, {a});  // add_tiled works in place
    return scalarize(ctx, ops::add_tiled(ctx.tape, a_copy, b), p.r, p.wr);
  };
  EXPECT_GRAD_OK(testing::grad_check(ctx, f, a.value, a.grad));
  EXPECT_GRAD_OK(testing::grad_check(ctx, f, b.value, b.grad));
}
}  // namespace
}  // namespace zscrgan

// ---- how backward writes gradients: the first writer of a region stores, later ones add ----

namespace zscrgan {
namespace {

// Fills the arena's next `floats` floats with NaN and resets it, so the activation gradients
// allocated next start as garbage rather than as whatever zeros a fresh allocation holds.
void poison_arena(testing::CpuContext& ctx, int floats) {
  ctx.arena.reset();
  Tensor t = ctx.arena.alloc(1, floats);
  for (size_t i = 0; i < t.numel(); ++i) t.data[i] = std::nanf("");
  ctx.arena.reset();
}

void fill_host(const Tensor& t, float v) {
  for (int r = 0; r < t.rows; ++r)
    for (int c = 0; c < t.cols; ++c) t.data[static_cast<size_t>(r) * t.ld + c] = v;
}

std::vector<float> host_copy(const Tensor& t) {
  std::vector<float> out;
  for (int r = 0; r < t.rows; ++r)
    for (int c = 0; c < t.cols; ++c) out.push_back(t.data[static_cast<size_t>(r) * t.ld + c]);
  return out;
}

// w and b serve two dense layers (and x1 two inputs of the loss): their gradients are the sums
// over every use, whatever the gradient buffers held before the backward (NaN here), and the
// same bits as zero-filled buffers give.
TEST(TapeGradientWrites, ParameterUsedTwiceGetsTheSumWhateverTheBufferHeld) {
  testing::CpuContext ctx;
  Var x1 = ctx.param(5, 6), x2 = ctx.param(5, 6), w = ctx.param(6, 4), b = ctx.param(1, 4);
  Tensor v = ctx.random(5, 4);
  std::vector<float> y1_host, y2_host;
  auto run = [&](float initial) {
    poison_arena(ctx, 1 << 16);
    ctx.tape.clear();
    for (const Var* p : {&x1, &x2, &w, &b}) fill_host(p->grad, initial);
    Var y1 = ops::dense(ctx.tape, x1, w, b, Act::LeakyRelu);
    Var y2 = ops::dense(ctx.tape, x2, w, b, Act::None);
    Var loss = ops::combine(ctx.tape, {ops::mean(ctx.tape, y1), ops::mean(ctx.tape, y2),
                                       ops::l1_rows(ctx.tape, y1, constant(v))},
                            {1.f, 2.f, 0.5f});
    ctx.tape.backward(loss);
    y1_host = host_copy(y1.value);
    y2_host = host_copy(y2.value);
    std::vector<float> grads;
    for (const Var* p : {&x1, &x2, &w, &b}) {
      const std::vector<float> g = host_copy(p->grad);
      grads.insert(grads.end(), g.begin(), g.end());
    }
    return grads;
  };
  const std::vector<float> from_nan = run(std::nanf(""));
  const std::vector<float> from_zero = run(0.f);
  ASSERT_EQ(from_nan.size(), from_zero.size());
  for (size_t i = 0; i < from_nan.size(); ++i)
    ASSERT_EQ(std::memcmp(&from_nan[i], &from_zero[i], sizeof(float)), 0)
        << "gradient element " << i << ": " << from_nan[i] << " from NaN-filled buffers, "
        << from_zero[i] << " from zero-filled ones";

  // The sums, in double: g1 = dL/d pre1, g2 = dL/d pre2.
  const int n = 5, in = 6, out = 4;
  std::vector<double> g1(n * out), g2(n * out);
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < out; ++c) {
      const float y = y1_host[r * out + c];
      const float d = y - v.data[r * out + c];
      const double dy1 = 1.0 / (n * out) + 0.5 * (d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0) / n;
      g1[r * out + c] = dy1 * act_grad_from_output(y, Act::LeakyRelu);
      g2[r * out + c] = 2.0 / (n * out);
    }
  const size_t w_at = 2 * n * in, b_at = w_at + in * out;
  for (int i = 0; i < in; ++i)
    for (int c = 0; c < out; ++c) {
      double want = 0;
      for (int r = 0; r < n; ++r)
        want += x1.value.data[r * in + i] * g1[r * out + c] + x2.value.data[r * in + i] * g2[r * out + c];
      EXPECT_NEAR(from_nan[w_at + i * out + c], want, 1e-5 + 1e-5 * std::fabs(want)) << "w " << i << "," << c;
    }
  for (int c = 0; c < out; ++c) {
    double want = 0;
    for (int r = 0; r < n; ++r) want += g1[r * out + c] + g2[r * out + c];
    EXPECT_NEAR(from_nan[b_at + c], want, 1e-5 + 1e-5 * std::fabs(want)) << "b " << c;
  }
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < in; ++i) {
      double want = 0;
      for (int c = 0; c < out; ++c) want += g1[r * out + c] * w.value.data[i * out + c];
      EXPECT_NEAR(from_nan[r * in + i], want, 1e-5 + 1e-5 * std::fabs(want)) << "x1 " << r << "," << i;
    }
  (void)y2_host;
}

// A gradient read before anything wrote all of it (rows the loss never looks at) reads as
// zeros, and a gradient the caller asks to be defined is zero where no node wrote it, even
// over garbage.
TEST(TapeGradientWrites, UnwrittenRegionsReadAsZero) {
  testing::CpuContext ctx;
  Var x = ctx.param(4, 3), w = ctx.param(3, 5), unused = ctx.param(2, 2);
  poison_arena(ctx, 1 << 16);
  for (const Var* p : {&x, &w, &unused}) fill_host(p->grad, std::nanf(""));
  Var y = ops::matmul(ctx.tape, {x}, w);
  Var loss = ops::mean(ctx.tape, ops::slice_rows(y, 0, 2));
  ctx.tape.backward(loss, {unused.grad});
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 3; ++i) {
      double want = 0;
      if (r < 2)
        for (int c = 0; c < 5; ++c) want += w.value.data[i * 5 + c] / 10.0;
      EXPECT_NEAR(x.grad.data[r * 3 + i], want, 1e-6) << "x " << r << "," << i;
    }
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 5; ++c) {
      const double want = (x.value.data[0 * 3 + i] + x.value.data[1 * 3 + i]) / 10.0;
      EXPECT_NEAR(w.grad.data[i * 5 + c], want, 1e-6) << "w " << i << "," << c;
    }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(unused.grad.data[i], 0.f);
}

// With a region to defer within, backward leaves out exactly the weight gradients that are a
// single product x^T dy and the only write to their bytes: w1 (one use) and both row blocks of
// w3 (one two-part matmul), not w2 (two uses, so two writers), not w_out (outside the region),
// and no bias or input gradient. Forming each deferred product afterwards gives the bits the
// plain backward computes.
TEST(TapeDeferredProducts, OnlySoleProductWritesInTheRegionAreLeftToTheCaller) {
  testing::CpuContext ctx;
  const int n = 5;
  Tensor flat = ctx.zeros(1, 6 * 4 + 4 + 4 * 3 + 3 + 5 * 2);
  int used = 0;
  auto in_flat = [&](int rows, int cols) {
    Tensor t(flat.data + used, rows, cols, Device::CPU);
    used += rows * cols;
    return t;
  };
  Var x = ctx.param(n, 6), a = ctx.param(n, 3), bq = ctx.param(n, 2);
  Var w1{ctx.random(6, 4), in_flat(6, 4)}, b1{ctx.random(1, 4), in_flat(1, 4)};
  Var w2{ctx.random(4, 3), in_flat(4, 3)}, b2{ctx.random(1, 3), in_flat(1, 3)};
  Var w3{ctx.random(5, 2), in_flat(5, 2)};
  Var w_out = ctx.param(3, 2);
  ASSERT_EQ(used, flat.cols);
  auto loss_of = [&]() {
    Var h = ops::dense(ctx.tape, x, w1, b1, Act::LeakyRelu);
    Var u = ops::dense(ctx.tape, h, w2, b2, Act::None);
    Var u2 = ops::dense(ctx.tape, ops::slice_rows(h, 0, 2), w2, b2, Act::Relu);
    Var v = ops::matmul(ctx.tape, {a, bq}, w3);
    Var o = ops::matmul(ctx.tape, {u}, w_out);
    return ops::combine(ctx.tape, {ops::mean(ctx.tape, u2), ops::mean(ctx.tape, v), ops::mean(ctx.tape, o)},
                        {1.f, 2.f, 0.5f});
  };
  const std::vector<const Var*> all = {&x, &a, &bq, &w1, &b1, &w2, &b2, &w3, &w_out};
  auto grads_of = [&]() {
    std::vector<float> g;
    for (const Var* p : all) {
      const std::vector<float> h = host_copy(p->grad);
      g.insert(g.end(), h.begin(), h.end());
    }
    return g;
  };

  ctx.tape.clear();
  ctx.tape.backward(loss_of());
  const std::vector<float> plain = grads_of();

  for (const Var* p : all) fill_host(p->grad, std::nanf(""));
  ctx.tape.clear();
  std::vector<Tape::DeferredProduct> deferred;
  ctx.tape.backward(loss_of(), {}, flat, &deferred);
  ASSERT_EQ(deferred.size(), 3u);
  const Tensor expected[] = {w1.grad, w3.grad.row_block(0, 3), w3.grad.row_block(3, 2)};
  for (const Tensor& e : expected) {
    const auto it = std::find_if(deferred.begin(), deferred.end(),
                                 [&](const Tape::DeferredProduct& d) { return d.grad.data == e.data; });
    ASSERT_NE(it, deferred.end()) << "the gradient at flat offset " << (e.data - flat.data) << " was not deferred";
    EXPECT_EQ(it->grad.rows, e.rows);
    EXPECT_EQ(it->grad.cols, e.cols);
    for (float g : host_copy(e)) EXPECT_TRUE(std::isnan(g)) << "a deferred gradient was written";
    ctx.be->gemm(true, false, 1.f, it->x, it->dy, 0.f, it->grad);
  }
  const std::vector<float> with_deferred = grads_of();
  ASSERT_EQ(with_deferred.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i)
    ASSERT_EQ(std::memcmp(&plain[i], &with_deferred[i], sizeof(float)), 0)
        << "gradient element " << i << ": " << plain[i] << " plain, " << with_deferred[i] << " deferred";
}

}  // namespace
}  // namespace zscrgan
