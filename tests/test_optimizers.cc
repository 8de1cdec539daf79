// The optimizers against updates computed by hand with TensorFlow 1's formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "test_support.h"

namespace zscrgan {
namespace {

using testing::CpuContext;

TEST(RmsPropTf1, MeanSquareStartsAtOneAndNoMomentum) {
  CpuContext ctx;
  Tensor p = ctx.persistent(1, 2), g = ctx.persistent(1, 2), ms = ctx.persistent(1, 2);
  p.data[0] = 0.5f; p.data[1] = -0.25f;
  g.data[0] = 2.f;  g.data[1] = -0.1f;
  ms.data[0] = ms.data[1] = 1.f;
  RmsPropHyper h;
  h.lr = 0.01f;
  ctx.be->rmsprop_update(p, g, ms, h);
  // ms = 1 + (4 - 1) * 0.1 = 1.3; p = 0.5 - 0.01 * 2 / sqrt(1.3 + 1e-10)
  EXPECT_NEAR(ms.data[0], 1.3, 1e-6);
  EXPECT_NEAR(p.data[0], 0.5 - 0.02 / std::sqrt(1.3), 1e-7);
  EXPECT_NEAR(ms.data[1], 1 + (0.01 - 1) * 0.1, 1e-6);
  // A second step uses the updated mean square.
  ctx.be->rmsprop_update(p, g, ms, h);
  const double ms2 = 1.3 + (4 - 1.3) * 0.1;
  EXPECT_NEAR(ms.data[0], ms2, 1e-6);
  EXPECT_NEAR(p.data[0], 0.5 - 0.02 / std::sqrt(1.3) - 0.02 / std::sqrt(ms2), 1e-6);
}

TEST(RmsPropTf1, CriticClipIsFusedAndCoversEveryValue) {
  CpuContext ctx;
  Tensor p = ctx.persistent(1, 3), g = ctx.persistent(1, 3), ms = ctx.persistent(1, 3);
  const float init[3] = {0.05f, -0.03f, 0.001f};
  for (int i = 0; i < 3; ++i) { p.data[i] = init[i]; g.data[i] = 0.f; ms.data[i] = 1.f; }
  RmsPropHyper h;
  h.lr = 1e-4f;
  h.clip = 0.01f;
  ctx.be->rmsprop_update(p, g, ms, h);
  EXPECT_FLOAT_EQ(p.data[0], 0.01f);
  EXPECT_FLOAT_EQ(p.data[1], -0.01f);
  EXPECT_FLOAT_EQ(p.data[2], 0.001f);
}

TEST(AdamTf1, BiasCorrectedStepWithFloat32BetaPowers) {
  CpuContext ctx;
  Tensor p = ctx.persistent(1, 1), g = ctx.persistent(1, 1), m = ctx.persistent(1, 1),
         v = ctx.persistent(1, 1), powers = ctx.persistent(1, 2);
  p.data[0] = 1.f; m.data[0] = 0.f; v.data[0] = 0.f;
  powers.data[0] = 0.5f; powers.data[1] = 0.999f;
  AdamHyper h;
  h.lr = 0.002f;
  const double grads[3] = {0.3, -0.1, 0.2};
  double pm = 0, pv = 0, pp = 1, b1t = 1, b2t = 1;
  for (double gv : grads) {
    g.data[0] = static_cast<float>(gv);
    ctx.be->adam_update(p, g, m, v, powers, h);
    b1t *= 0.5;
    b2t *= 0.999;
    pm = 0.5 * pm + 0.5 * gv;
    // TF computes (1 - beta2) in float32: 1 - 0.999f = 0.00100004673.
    const double one_minus_b2 = 1.0f - 0.999f;
    pv = pv + (gv * gv - pv) * one_minus_b2;
    const double lr_t = 0.002 * std::sqrt(1 - b2t) / (1 - b1t);
    pp -= lr_t * pm / (std::sqrt(pv) + 1e-8);
    EXPECT_NEAR(m.data[0], pm, 1e-7);
    EXPECT_NEAR(v.data[0], pv, 1e-9);
    EXPECT_NEAR(p.data[0], pp, 2e-6);
  }
  EXPECT_FLOAT_EQ(powers.data[0], 0.0625f);  // 0.5^4: the powers advanced after each step
  EXPECT_NEAR(powers.data[1], std::pow(0.999, 4), 1e-6);
}

}  // namespace
}  // namespace zscrgan
