// The trainer driven through the capture-emulating backend (CUDA-graph semantics on the CPU:
// captured calls keep their by-value arguments, pointers are read at replay) against the plain
// CPU backend: losses, metrics and parameters must be bit-identical round after round, on
// schedules that exercise short CSEM chunks, a single D step, a single CSEM step and several
// replays per round, and across a checkpoint taken mid-round.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "capture_emulating_backend.h"
#include "data_test_util.h"
#include "train/checkpoint.h"
#include "train/run.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

using testing::CaptureEmulatingBackend;

struct Schedule {
  int e_step_iters, m_step_iters, n_critic, batch_size;
};

std::string name(const Schedule& s) {
  return std::to_string(s.e_step_iters) + "/" + std::to_string(s.m_step_iters) + "/" +
         std::to_string(s.n_critic) + "/" + std::to_string(s.batch_size);
}

Config config_for(const Schedule& s) {
  Config c;
  c.gf_dim = 24;
  c.df_dim = 16;
  c.embed_dim = 8;
  c.z_dim = 4;
  c.e_step_iters = s.e_step_iters;
  c.m_step_iters = s.m_step_iters;
  c.n_critic = s.n_critic;
  c.batch_size = s.batch_size;
  c.cuda_graphs = true;
  c.seed = 17;
  c.top_k = 10;
  c.synthetic.seen_classes = 10;
  c.synthetic.unseen_classes = 4;
  c.synthetic.images_per_class = 12;
  c.synthetic.text_dim = 12;
  c.synthetic.image_dim = 16;
  return c;
}

// Everything a round produces that the run reports or carries on: the four mean losses, the
// three metrics and every parameter value.
struct RoundRecord {
  RoundLosses losses;
  double prec = 0, map = 0, top1 = 0;
  std::vector<float> params;
};

RoundRecord record(Trainer& t, const RoundLosses& l) {
  RoundRecord r;
  r.losses = l;
  const EvalResult e = t.evaluate();
  r.prec = e.prec_at_k;
  r.map = e.map_at_k;
  r.top1 = e.top1;
  for (const NamedTensor& p : t.model().parameter_tensors()) {
    std::vector<float> host(p.tensor.numel());
    t.backend().download(p.tensor, host.data());
    r.params.insert(r.params.end(), host.begin(), host.end());
  }
  return r;
}

void expect_bit_identical(const RoundRecord& eager, const RoundRecord& captured, int round) {
  SCOPED_TRACE("round " + std::to_string(round));
  EXPECT_EQ(eager.losses.critic, captured.losses.critic);
  EXPECT_EQ(eager.losses.generator, captured.losses.generator);
  EXPECT_EQ(eager.losses.csem, captured.losses.csem);
  EXPECT_EQ(eager.losses.kl, captured.losses.kl);
  EXPECT_EQ(eager.prec, captured.prec);
  EXPECT_EQ(eager.map, captured.map);
  EXPECT_EQ(eager.top1, captured.top1);
  ASSERT_EQ(eager.params.size(), captured.params.size());
  size_t differing = 0;
  for (size_t i = 0; i < eager.params.size(); ++i) differing += eager.params[i] != captured.params[i];
  EXPECT_EQ(differing, 0u) << "of " << eager.params.size() << " parameter values differ";
}

constexpr int kRounds = 4;

class CapturedTrainer : public ::testing::TestWithParam<Schedule> {};

TEST_P(CapturedTrainer, ReplayedRoundsEqualEagerRoundsBitForBit) {
  const Config cfg = config_for(GetParam());
  const Dataset data = load_configured_dataset(cfg);
  auto cpu = make_cpu_backend();
  CaptureEmulatingBackend emu;
  Trainer eager(cfg, data, *cpu);
  Trainer captured(cfg, data, emu);
  ASSERT_FALSE(eager.replays_captured_steps());
  ASSERT_TRUE(captured.replays_captured_steps());
  for (int r = 1; r <= kRounds; ++r) {
    const RoundRecord a = record(eager, eager.train_round());
    const RoundRecord b = record(captured, captured.train_round());
    expect_bit_identical(a, b, r);
  }
  // The comparison means something only if steps were replayed from recordings.
  EXPECT_GT(emu.captures(), 0);
  EXPECT_GT(emu.replays(), 0);
}

INSTANTIATE_TEST_SUITE_P(Schedules, CapturedTrainer,
                         ::testing::Values(Schedule{6, 7, 5, 8},     // several replays per round
                                           Schedule{3, 650, 2, 8},   // a short last CSEM chunk
                                           Schedule{2, 1, 5, 4},     // a single CSEM step
                                           Schedule{1, 3, 1, 16},    // one E-step iteration
                                           Schedule{5, 300, 3, 16}),
                         [](const auto& info) {
                           std::string n = name(info.param);
                           for (char& c : n)
                             if (c == '/') c = '_';
                           return "e_m_nc_b_" + n;
                         });

// The trainer does not zero-fill gradients before a step: each step's backward defines every
// parameter gradient. So NaN written over all of them before each round, on the plain CPU
// backend and under emulated capture (the recorded steps replayed), changes no bit of what
// the rounds produce.
TEST(CapturedTrainerGradients, GarbageInTheGradientBuffersChangesNothing) {
  const Config cfg = config_for(Schedule{3, 7, 5, 8});
  const Dataset data = load_configured_dataset(cfg);
  auto cpu = make_cpu_backend(), cpu_nan = make_cpu_backend();
  CaptureEmulatingBackend emu;
  Trainer reference(cfg, data, *cpu);
  Trainer eager(cfg, data, *cpu_nan);
  Trainer captured(cfg, data, emu);
  ASSERT_TRUE(captured.replays_captured_steps());
  auto poison = [](Trainer& t) {
    Model& m = t.model();
    for (ParamGroup* g : {&m.generator_group, &m.critic_group, &m.csem_group})
      for (const Tensor& grad : g->gradients) t.backend().fill(grad, std::nanf(""));
  };
  for (int r = 1; r <= 3; ++r) {
    poison(eager);
    poison(captured);
    const RoundRecord want = record(reference, reference.train_round());
    const RoundRecord a = record(eager, eager.train_round());
    const RoundRecord b = record(captured, captured.train_round());
    expect_bit_identical(want, a, r);
    expect_bit_identical(want, b, r);
  }
  EXPECT_GT(emu.replays(), 0);
}

// A run stopped mid-round under emulated capture, checkpointed and resumed on a fresh
// emulated backend, continues exactly like an uninterrupted eager run.
TEST(CapturedTrainerResume, MidRoundCheckpointContinuesLikeAnEagerRun) {
  const Config cfg = config_for({6, 650, 5, 8});  // three CSEM chunks
  const Dataset data = load_configured_dataset(cfg);
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("last.safetensors");

  auto cpu = make_cpu_backend();
  Trainer eager(cfg, data, *cpu);
  std::vector<RoundRecord> want;
  for (int r = 0; r < kRounds; ++r) want.push_back(record(eager, eager.train_round()));

  for (int stop_at : {3, 6, 7}) {  // inside the E-step; at its end; after the first CSEM chunk
    SCOPED_TRACE("stopped at poll " + std::to_string(stop_at));
    CaptureEmulatingBackend first;
    Trainer a(cfg, data, first);
    record(a, a.train_round());
    int polls = 0;
    RoundHooks stop;
    stop.should_stop = [&] { return polls++ == stop_at; };
    ASSERT_FALSE(a.run_round(stop).has_value());
    save_checkpoint(a, RunState{}, path);

    CaptureEmulatingBackend second;
    Trainer b(cfg, data, second);
    load_checkpoint(b, path);
    for (int r = 1; r < kRounds; ++r) expect_bit_identical(want[r], record(b, b.train_round()), r + 1);
    EXPECT_GT(second.replays(), 0);
  }
}

// The step pieces bench_train_step calls directly, in the order it calls them, work on a
// capturing backend before any round ran (the CSEM benchmark starts with a chunk).
TEST(CapturedTrainerPieces, BenchmarkSequencesRunBeforeAnyRound) {
  const Config cfg = config_for({2, 7, 2, 8});
  const Dataset data = load_configured_dataset(cfg);
  CaptureEmulatingBackend emu;
  {
    Trainer trainer(cfg, data, emu);
    TrainerSteps t(trainer);
    for (int i = 0; i < 3; ++i) {  // BM_CsemStep
      t.begin_round();
      t.csem_chunk(0, t.csem_chunk_steps());
    }
    EXPECT_GT(emu.replays(), 0);
  }
  {
    Trainer trainer(cfg, data, emu);  // BM_DStep and BM_GStep
    TrainerSteps t(trainer);
    t.begin_round();
    for (int i = 0; i < 2; ++i) {
      t.d_steps();
      t.g_step();
    }
  }
  {
    Trainer t(cfg, data, emu);  // BM_Round, graphs on and off
    for (bool graphs : {true, false}) {
      t.set_capture(graphs);
      t.train_round();
    }
  }
}

// A recording that throws (a launch failing while a CUDA graph is recorded) leaves nothing
// open: the trainer's parameters can still be read, as saving a checkpoint does, its memory
// freed, and a new trainer on the same backend trains exactly as on the plain CPU.
TEST(CapturedTrainerFailure, ARecordingThatThrowsLeavesTheBackendUsable) {
  const Config cfg = config_for({3, 7, 2, 8});
  const Dataset data = load_configured_dataset(cfg);
  CaptureEmulatingBackend emu;
  {
    Trainer t(cfg, data, emu);
    emu.fail_captured_call(5);
    EXPECT_THROW(t.train_round(), DeviceError);
    EXPECT_EQ(emu.captures(), 0);
    std::vector<float> host;
    for (const NamedTensor& p : t.model().parameter_tensors()) {
      host.resize(p.tensor.numel());
      t.backend().download(p.tensor, host.data());  // fails the test inside a capture
    }
  }  // frees the trainer's memory: also refused inside a capture
  auto cpu = make_cpu_backend();
  Trainer eager(cfg, data, *cpu);
  Trainer captured(cfg, data, emu);
  for (int r = 1; r <= 2; ++r)
    expect_bit_identical(record(eager, eager.train_round()), record(captured, captured.train_round()), r);
  EXPECT_GT(emu.replays(), 0);
}

// A top_k above what the device selects per query (CUDA: 1024) stops the trainer at
// construction, before any training, with the key named, not at the first evaluation; and
// topk_cosine refuses it by itself.
TEST(CapturedTrainerFailure, TopKAboveTheDeviceLimitFailsBeforeTraining) {
  Config cfg = config_for({3, 7, 2, 8});
  cfg.top_k = 10;
  const Dataset data = load_configured_dataset(cfg);
  CaptureEmulatingBackend emu;
  emu.set_max_top_k(9);
  try {
    Trainer t(cfg, data, emu);
    ADD_FAILURE() << "the trainer was built";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "top_k 10 is above the 9 that the cpu backend selects per query; "
                           "use a top_k of at most 9");
  }
  emu.set_max_top_k(10);
  Trainer t(cfg, data, emu);  // at the limit: trains and evaluates
  t.train_round();
  EXPECT_GE(t.evaluate().prec_at_k, 0.0);
  emu.set_max_top_k(9);
  EXPECT_THROW(t.evaluate(), Error);  // topk_cosine checks k itself too
}

}  // namespace
}  // namespace zscrgan
