// End to end on the CPU: a short fixed-seed run's losses match stored values, the same run
// stopped and resumed mid-round continues identically, and training beats chance.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "end_to_end_golden.h"
#include "train/run.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

TEST(EndToEnd, ShortFixedSeedRunMatchesStoredValues) {
  // The golden file is written only by the update_golden program, never by this test.
  std::ifstream in(golden::kEndToEndPath);
  ASSERT_TRUE(in) << golden::kEndToEndPath << " is missing; create it with: "
                  << golden::kUpdateCommand;
  const nlohmann::json golden_rounds = nlohmann::json::parse(in)["rounds"];
  const nlohmann::json rounds = golden::end_to_end_values()["rounds"];
  ASSERT_EQ(golden_rounds.size(), rounds.size());
  for (size_t r = 0; r < rounds.size(); ++r) {
    ASSERT_EQ(golden_rounds[r].size(), std::size(golden::kValueNames))
        << golden::kEndToEndPath << ": round " << r + 1;
    for (size_t i = 0; i < std::size(golden::kValueNames); ++i) {
      const double want = golden_rounds[r][i], got = rounds[r][i];
      EXPECT_NEAR(got, want, 1e-3 * std::fabs(want) + 1e-5)
          << "round " << r + 1 << " " << golden::kValueNames[i]
          << " (if the change is meant to alter it: " << golden::kUpdateCommand << ")";
    }
  }
}

TEST(EndToEnd, StoppedMidRoundAndResumedContinuesIdentically) {
  const Config cfg = golden::short_run();
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
  c.restore_training_state(b.training_state());
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
