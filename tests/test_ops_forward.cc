// Forward values of each op on small hand-checked cases, and the shared per-element math.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "test_support.h"
#include "autograd/ops.h"
#include "backend/elementwise.h"

namespace zscrgan {
namespace {

using testing::CpuContext;

Tensor from(CpuContext& ctx, int rows, int cols, std::initializer_list<float> values) {
  Tensor t = ctx.persistent(rows, cols);
  size_t i = 0;
  for (float v : values) t.data[i++] = v;
  EXPECT_EQ(i, t.numel());
  return t;
}

TEST(SharedMath, ActivationsAndTheirDerivativesAtTheKinks) {
  EXPECT_FLOAT_EQ(act_forward(-2.f, Act::LeakyRelu), -0.4f);
  EXPECT_FLOAT_EQ(act_forward(3.f, Act::LeakyRelu), 3.f);
  EXPECT_FLOAT_EQ(act_forward(-2.f, Act::Relu), 0.f);
  EXPECT_FLOAT_EQ(act_grad_from_output(0.f, Act::LeakyRelu), 0.2f);  // TF: LeakyReLU'(0) = 0.2
  EXPECT_FLOAT_EQ(act_grad_from_output(0.f, Act::Relu), 0.f);        // TF: ReLU'(0) = 0
  EXPECT_FLOAT_EQ(sign_tf(0.f), 0.f);                                // TF: d|x|/dx at 0 = 0
}

// The select form the CPU loops and CUDA kernels use is dy * act'(y) to the bit, signed zeros,
// infinities and NaN included.
TEST(SharedMath, ActBackwardIsTheProductWithTheDerivativeBitForBit) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const std::vector<float> values = {0.f, -0.f, 1.f, -1.f, 0.2f, -3.5e-39f, 7e30f, -7e30f, inf, -inf, nan};
  for (Act act : {Act::LeakyRelu, Act::Relu, Act::None})
    for (float dy : values)
      for (float y : values) {
        const float want = dy * act_grad_from_output(y, act), got = act_backward(dy, y, act);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(got)) << "dy " << dy << ", y " << y;
        } else {
          EXPECT_EQ(bits_as<uint32_t>(got), bits_as<uint32_t>(want))
              << "act " << int(act) << ", dy " << dy << ", y " << y << ": " << got << " vs " << want;
        }
      }
}

TEST(OpsForward, MatmulOverTwoPartsEqualsMatmulOfTheConcatenation) {
  CpuContext ctx;
  Tensor a = from(ctx, 2, 1, {1, 2});
  Tensor b = from(ctx, 2, 2, {3, 4, 5, 6});
  Tensor w = from(ctx, 3, 2, {1, 0, 0, 1, 1, 1});  // rows: a's, then b's two columns
  Var y = ops::matmul(ctx.tape, {constant(a), constant(b)}, constant(w));
  // [1 3 4] W = [1+4, 3+4] ; [2 5 6] W = [2+6, 5+6]
  EXPECT_FLOAT_EQ(y.value.data[0], 5);
  EXPECT_FLOAT_EQ(y.value.data[1], 7);
  EXPECT_FLOAT_EQ(y.value.data[2], 8);
  EXPECT_FLOAT_EQ(y.value.data[3], 11);
}

TEST(OpsForward, BiasActivation) {
  CpuContext ctx;
  Tensor y = from(ctx, 1, 3, {-1, 0.5f, -3});
  Tensor b = from(ctx, 1, 3, {0, 0.5f, 1});
  Var out = ops::bias_act(ctx.tape, constant(y), constant(b), Act::LeakyRelu);
  EXPECT_FLOAT_EQ(out.value.data[0], -0.2f);
  EXPECT_FLOAT_EQ(out.value.data[1], 1.f);
  EXPECT_FLOAT_EQ(out.value.data[2], -0.4f);
}

TEST(OpsForward, Reparam) {
  CpuContext ctx;
  Tensor h = from(ctx, 1, 4, {1, 2, 0, std::log(2.f)});  // mu = (1, 2), log_sigma = (0, ln 2)
  Tensor eps = from(ctx, 1, 2, {0.5f, -1});
  Var c = ops::reparam(ctx.tape, constant(h), eps);
  EXPECT_FLOAT_EQ(c.value.data[0], 1.5f);     // 1 + 1 * 0.5
  EXPECT_NEAR(c.value.data[1], 0.f, 1e-6);    // 2 + 2 * -1
}

TEST(OpsForward, PublishedKlIsNotTheTextbookKl) {
  CpuContext ctx;
  // mu = 0.4, log_sigma = -0.2: m = 0.1; K(a, m) = -m + 0.5(-1 + e^{0.2} + a^2).
  Tensor h = from(ctx, 1, 2, {0.4f, -0.2f});
  const double m = 0.1, e = std::exp(0.2);
  const double k_mu = -m + 0.5 * (-1 + e + 0.16), k_ls = -m + 0.5 * (-1 + e + 0.04);
  Var kl = ops::kl_published(ctx.tape, constant(h));
  EXPECT_NEAR(kl.value.data[0], 0.5 * (k_mu + k_ls), 1e-6);
  const double textbook = 0.5 * (std::exp(-0.4) + 0.16 - 1 + 0.4);
  EXPECT_GT(std::fabs(kl.value.data[0] - textbook), 1e-3);
}

TEST(OpsForward, L1RowsMeanOfRowSums) {
  CpuContext ctx;
  Tensor x = from(ctx, 2, 2, {1, 2, 3, 4});
  Tensor v = from(ctx, 2, 2, {0, 0, 3, 6});
  Var l = ops::l1_rows(ctx.tape, constant(x), constant(v));
  EXPECT_FLOAT_EQ(l.value.data[0], (3.f + 2.f) / 2.f);
}

TEST(OpsForward, CosineMeanWithTheNormFloor) {
  CpuContext ctx;
  Tensor a = from(ctx, 2, 2, {3, 4, 0, 0});
  Tensor b = from(ctx, 2, 2, {4, 3, 1, 0});
  Var c = ops::cosine_rows(ctx.tape, constant(a), constant(b));
  // row 0: 24/25; row 1: a is zero, normalised to zero by the 1e-12 floor: cos 0.
  EXPECT_NEAR(c.value.data[0], 0.5 * 24.0 / 25.0, 1e-7);
}

TEST(OpsForward, MeanSoftplusCombine) {
  CpuContext ctx;
  Tensor x = from(ctx, 2, 2, {1, 2, 3, 6});
  Var m = ops::mean(ctx.tape, constant(x));
  EXPECT_FLOAT_EQ(m.value.data[0], 3.f);
  Var s = ops::softplus(ctx.tape, constant(from(ctx, 1, 1, {0.f})));
  EXPECT_FLOAT_EQ(s.value.data[0], std::log(2.f));
  Var c = ops::combine(ctx.tape, {m, s}, {2.f, -1.f}, 0.5f);
  EXPECT_FLOAT_EQ(c.value.data[0], 6.5f - std::log(2.f));
}

TEST(OpsForward, ConcatAndSliceViews) {
  CpuContext ctx;
  Tensor a = from(ctx, 2, 1, {1, 2});
  Tensor b = from(ctx, 2, 2, {3, 4, 5, 6});
  Var ab = ops::concat_cols(ctx.tape, constant(a), constant(b));
  EXPECT_EQ(ab.cols(), 3);
  EXPECT_FLOAT_EQ(ab.value.data[3], 2);
  Var r = ops::concat_rows(ctx.tape, {ab, ab});
  EXPECT_EQ(r.rows(), 4);
  Var s = ops::slice_cols(ops::slice_rows(r, 3, 1), 1, 2);
  EXPECT_EQ(s.value.data, r.value.data + 3 * 3 + 1);  // a view, not a copy
  EXPECT_FLOAT_EQ(s.value.data[0], 5);
  EXPECT_FLOAT_EQ(s.value.data[1], 6);
}

// The written-out exp (elementwise.h) against the correctly rounded one, libm's double exp
// rounded to float: at most one ulp anywhere, exact but in rare near-halfway cases (none in
// 172 million floats sampled from (-87, 88), where glibc's expf misses 13,018), and exact at
// the ends of the range (overflow to infinity, underflow through the subnormals to zero), at 0
// and for NaN.
TEST(SharedMath, PortableExpfIsTheCorrectlyRoundedExpButInRareCases) {
  std::vector<float> xs = {0.f, -0.f, 1.f, -1.f, 88.7f, 88.72f, 88.7229f, 88.73f, 89.f, 100.f,
                           -87.3f, -103.9f, -103.97f, -103.98f, -104.f, -150.f, 1e-30f, -1e-30f,
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity()};
  // Every 997th float of (-110, 95), about 2.2 million, so every binade and both ends of the
  // range are covered. (With ln 2 in one part, or Taylor's series stopped at degree 7, about
  // 7,000 or 1,100 of them come out one ulp off.)
  for (uint32_t bits = 0; bits < 0x80000000u; bits += 997) {
    const float f = bits_as<float>(bits);
    if (f < 95.f) xs.push_back(f);
    if (f < 110.f) xs.push_back(-f);
  }
  int inexact = 0;
  for (float x : xs) {
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    const float got = portable_expf(x);
    if (got == want && std::signbit(got) == std::signbit(want)) continue;
    ++inexact;
    ASSERT_EQ(std::nextafter(want, got), got) << "exp(" << x << "): " << got << ", want " << want;
  }
  EXPECT_LE(inexact, 2) << "of " << xs.size() << " arguments";
  EXPECT_TRUE(std::isnan(portable_expf(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(portable_expf(0.f), 1.f);
  EXPECT_EQ(portable_expf(89.f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(portable_expf(-104.f), 0.f);
  EXPECT_GT(portable_expf(-103.9f), 0.f);  // a subnormal, not flushed
}

// The written-out log, cos and sin of the noise (elementwise.h) against libm: a few double
// ulps, over random Philox words and the edges of their reductions.
TEST(Noise, BoxMullerLogCosSinMatchLibm) {
  std::mt19937 rng(11);
  std::vector<uint32_t> words = {0u, 1u, 2u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu};
  for (uint32_t q = 0; q <= 4; ++q)  // around every quarter and eighth turn
    for (int64_t d = -3; d <= 3; ++d) {
      words.push_back(static_cast<uint32_t>((int64_t(q) << 30) + d));
      words.push_back(static_cast<uint32_t>((int64_t(q) << 30) + (1 << 29) + d));
    }
  for (int i = 0; i < 2000000; ++i) words.push_back(static_cast<uint32_t>(rng()));
  double worst_log_ulps = 0, worst_trig = 0;
  for (uint32_t x : words) {
    const double u = philox_uniform_open(x);
    const double want_log = std::log(u);
    const double ulp = std::fabs(std::nextafter(want_log, 0.0) - want_log);
    worst_log_ulps = std::max(worst_log_ulps, std::fabs(box_muller_log(u) - want_log) / ulp);
    // The angle 2 pi u in long double, so the reference's own angle rounding stays far below.
    const long double angle = 6.283185307179586476925286766559L * static_cast<long double>(u);
    double c, s;
    box_muller_cos_sin(x, &c, &s);
    worst_trig = std::max(worst_trig, static_cast<double>(std::fabs(c - std::cos(angle))));
    worst_trig = std::max(worst_trig, static_cast<double>(std::fabs(s - std::sin(angle))));
  }
  EXPECT_LE(worst_log_ulps, 2.0);
  EXPECT_LE(worst_trig, 3e-16);
}

// So the noise is, in all but vanishingly rare elements, what libm's Box-Muller draws from the
// same Philox words; where it differs, by one float ulp.
TEST(Noise, NormalsAreLibmBoxMullerInAllButRareElements) {
  const NoiseStream s{7, 3};
  int differ = 0;
  for (uint64_t e = 0; e < 1000000; ++e) {
    float n0, n1;
    philox_normal_pair(s, e, 0u, &n0, &n1);
    const Philox4 r = philox_for_normal(s, e, 0u);
    const double radius = std::sqrt(-2.0 * std::log(philox_uniform_open(r.v[0])));
    const double angle = 6.283185307179586476925 * philox_uniform_open(r.v[1]);
    const float want0 = static_cast<float>(radius * std::cos(angle));
    const float want1 = static_cast<float>(radius * std::sin(angle));
    for (auto [got, want] : {std::pair<float, float>{n0, want0}, {n1, want1}}) {
      if (got == want) continue;
      ++differ;
      ASSERT_EQ(std::nextafter(want, got), got) << "element " << e << ": " << got << " vs libm " << want;
    }
  }
  EXPECT_LE(differ, 20) << "of 2,000,000 draws";
}

TEST(Noise, PhiloxStreamsAreDeterministicAddressedAndTruncated) {
  CpuContext ctx;
  Tensor a = ctx.persistent(64, 33), b = ctx.persistent(64, 33), c = ctx.persistent(64, 33);
  ctx.be->fill_truncated_normal(a, NoiseStream{5, 1});
  ctx.be->fill_truncated_normal(b, NoiseStream{5, 1});
  ctx.be->fill_truncated_normal(c, NoiseStream{5, 2});
  int differ = 0;
  double sum = 0, sum_sq = 0;
  for (size_t i = 0; i < a.numel(); ++i) {
    ASSERT_EQ(a.data[i], b.data[i]);
    ASSERT_LT(std::fabs(a.data[i]), 2.f);
    differ += a.data[i] != c.data[i];
    sum += a.data[i];
    sum_sq += a.data[i] * a.data[i];
  }
  EXPECT_GT(differ, int(a.numel()) - 3);
  const double n = double(a.numel()), mean = sum / n, var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0, 0.06);
  EXPECT_NEAR(var, 0.774, 0.06);  // variance of N(0,1) truncated to (-2, 2)
  // A step counter moves the stream exactly as the offset would.
  int64_t step = 3;
  Tensor d = ctx.persistent(64, 33), e = ctx.persistent(64, 33);
  ctx.be->fill_normal(d, NoiseStream{5, 1, &step, 10});
  ctx.be->fill_normal(e, NoiseStream{5, 31});
  for (size_t i = 0; i < d.numel(); ++i) ASSERT_EQ(d.data[i], e.data[i]);
}

}  // namespace
}  // namespace zscrgan
