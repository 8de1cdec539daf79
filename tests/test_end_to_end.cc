// End to end on the CPU: a short fixed-seed run's losses match stored values, the same run
// stopped and resumed mid-round continues identically, and training beats chance.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "zscrgan/run.h"
#include "zscrgan/trainer.h"

namespace zscrgan {
namespace {

const char* kGolden = ZSCRGAN_SOURCE_DIR "/tests/golden/end_to_end.json";

Config short_run() {
  Config c;
  c.gf_dim = 64;
  c.df_dim = 32;
  c.embed_dim = 16;
  c.z_dim = 8;
  c.e_step_iters = 10;
  c.m_step_iters = 10;
  c.seed = 11;
  c.synthetic.seen_classes = 12;
  c.synthetic.unseen_classes = 6;
  c.synthetic.images_per_class = 20;
  c.synthetic.text_dim = 16;
  c.synthetic.image_dim = 24;
  c.top_k = 10;
  return c;
}

std::vector<double> flatten(const RoundLosses& l, const EvalResult& e) {
  return {l.critic, l.generator, l.csem, l.kl, e.prec_at_k, e.map_at_k, e.top1};
}

TEST(EndToEnd, ShortFixedSeedRunMatchesStoredValues) {
  const Config cfg = short_run();
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer t(cfg, data, *be);
  nlohmann::json rounds = nlohmann::json::array();
  for (int r = 0; r < 3; ++r) {
    RoundLosses l = t.train_round();
    rounds.push_back(flatten(l, t.evaluate()));
  }
  if (std::getenv("ZSCRGAN_UPDATE_GOLDEN")) {
    std::ofstream(kGolden) << nlohmann::json{{"rounds", rounds}}.dump(2) << "\n";
    GTEST_SKIP() << "golden values written to " << kGolden;
  }
  std::ifstream in(kGolden);
  ASSERT_TRUE(in) << kGolden << " is missing; run with ZSCRGAN_UPDATE_GOLDEN=1 to create it";
  const nlohmann::json golden = nlohmann::json::parse(in)["rounds"];
  ASSERT_EQ(golden.size(), rounds.size());
  const char* names[] = {"loss_d", "loss_g", "loss_csem", "loss_kl", "prec", "map", "top1"};
  for (size_t r = 0; r < rounds.size(); ++r)
    for (size_t i = 0; i < 7; ++i) {
      const double want = golden[r][i], got = rounds[r][i];
      EXPECT_NEAR(got, want, 1e-3 * std::fabs(want) + 1e-5) << "round " << r + 1 << " " << names[i];
    }
}

TEST(EndToEnd, StoppedMidRoundAndResumedContinuesIdentically) {
  const Config cfg = short_run();
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  // Uninterrupted: two rounds.
  Trainer a(cfg, data, *be);
  a.train_round();
  const RoundLosses a2 = a.train_round();
  const EvalResult ea = a.evaluate();
  // Interrupted in round 2 after 4 E-step iterations; the state moves to a fresh trainer
  // (parameters, optimizer state, sampler, run state, round progress), which finishes.
  Trainer b(cfg, data, *be);
  b.train_round();
  int polls = 0;
  RoundHooks stop_early;
  stop_early.should_stop = [&] { return polls++ == 4; };
  ASSERT_FALSE(b.run_round(stop_early).has_value());
  Trainer c(cfg, data, *be);
  const auto pa = b.model().parameter_tensors(), pc = c.model().parameter_tensors();
  const auto sa = b.model().state_tensors(), sc = c.model().state_tensors();
  for (size_t i = 0; i < pa.size(); ++i) be->copy(pc[i].tensor, pa[i].tensor);
  for (size_t i = 0; i < sa.size(); ++i) be->copy(sc[i].tensor, sa[i].tensor);
  c.sampler().restore(b.sampler().state());
  c.state() = b.state();
  c.restore_round_progress(b.round_progress());
  const RoundLosses c2 = c.train_round();
  const EvalResult ec = c.evaluate();
  EXPECT_EQ(c2.critic, a2.critic);
  EXPECT_EQ(c2.generator, a2.generator);
  EXPECT_EQ(c2.csem, a2.csem);
  EXPECT_EQ(ec.prec_at_k, ea.prec_at_k);
  EXPECT_EQ(ec.retrieved, ea.retrieved);
}

TEST(EndToEnd, DemoSizedTrainingBeatsChance) {
  Config cfg;  // the demo's sizes on the default synthetic dataset, a few rounds
  cfg.gf_dim = 256;
  cfg.df_dim = 128;
  cfg.embed_dim = 64;
  cfg.z_dim = 32;
  cfg.seed = 0;
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer t(cfg, data, *be);
  double best = 0;
  for (int r = 0; r < 8; ++r) {
    t.train_round();
    best = std::max(best, t.evaluate().prec_at_k);
  }
  const double chance = 1.0 / data.test_classes.size();
  EXPECT_GT(best, 2.5 * chance) << "best Precision@50 " << best << ", chance " << chance;
}

}  // namespace
}  // namespace zscrgan
