// The CPU backend's loop levels (backend/cpu/cpu_isa.h) train alike: the golden short run
// (tests/end_to_end_golden.h), two rounds under every level this CPU runs, against the default
// level. avx2 and avx512 contract a * b + c to FMA alike and keep every reduction's order, so
// they must leave every parameter and optimizer-state tensor bitwise identical; baseline has
// no FMA and rounds differently, so its losses and metrics are held to the golden test's
// tolerance (1e-3 relative + 1e-5).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"
#include "end_to_end_golden.h"
#include "train/trainer.h"

namespace zscrgan {
namespace {

struct Trained {
  std::vector<double> values;  // per round: the losses and metrics
  std::vector<std::string> names;
  std::vector<std::vector<float>> tensors;  // parameters, then optimizer state
};

Trained train_at(CpuIsa isa) {
  const Config cfg = golden::short_run();
  const Dataset data = load_configured_dataset(cfg);
  ::testing::internal::CaptureStderr();
  auto be = make_cpu_backend(isa);
  ::testing::internal::GetCapturedStderr();
  Trainer t(cfg, data, *be);
  Trained out;
  for (int r = 0; r < 2; ++r) {
    const RoundLosses l = t.train_round();
    const EvalResult e = t.evaluate();
    for (double v : {l.critic, l.generator, l.csem, l.kl, e.prec_at_k, e.map_at_k, e.top1})
      out.values.push_back(v);
  }
  auto keep = [&](const std::vector<NamedTensor>& ts) {
    for (const NamedTensor& n : ts) {
      out.names.push_back(n.name);
      out.tensors.emplace_back(n.tensor.numel());
      be->download(n.tensor, out.tensors.back().data());
    }
  };
  keep(t.model().parameter_tensors());
  keep(t.model().state_tensors());
  return out;
}

TEST(CpuIsaLevels, ShortTrainingMatchesTheDefaultLevel) {
  const CpuIsa default_isa = cpu_isa_selected();
  const Trained want = train_at(default_isa);
  int compared = 0;
  for (CpuIsa isa : kCpuIsas) {
    if (isa == default_isa || !cpu_isa_supported(isa)) continue;
    ++compared;
    const Trained got = train_at(isa);
    const std::string vs = std::string("loops ") + cpu_isa_name(isa) + " vs " + cpu_isa_name(default_isa);
    ASSERT_EQ(want.values.size(), got.values.size());
    ASSERT_EQ(want.names, got.names);
    if (isa != CpuIsa::Baseline && default_isa != CpuIsa::Baseline) {
      for (size_t i = 0; i < want.values.size(); ++i)
        EXPECT_EQ(want.values[i], got.values[i]) << vs << ": round " << i / 7 + 1 << " "
                                                 << golden::kValueNames[i % 7];
      for (size_t i = 0; i < want.tensors.size(); ++i)
        EXPECT_EQ(0, std::memcmp(want.tensors[i].data(), got.tensors[i].data(),
                                 want.tensors[i].size() * sizeof(float)))
            << vs << ": " << want.names[i] << " not bitwise identical";
    } else {
      for (size_t i = 0; i < want.values.size(); ++i)
        EXPECT_NEAR(got.values[i], want.values[i], 1e-3 * std::fabs(want.values[i]) + 1e-5)
            << vs << ": round " << i / 7 + 1 << " " << golden::kValueNames[i % 7];
    }
  }
  if (compared == 0) GTEST_SKIP() << "this CPU runs only the " << cpu_isa_name(default_isa) << " loops";
}

}  // namespace
}  // namespace zscrgan
