// One query path: evaluation draws its own noise, so evaluating (or evaluating with another
// top_k) never changes training, and `evaluate` on a run's checkpoint reproduces the metrics
// the run logged for that round.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "small_config.h"
#include "train/checkpoint.h"
#include "infer/inference.h"
#include "core/fileio.h"
#include "eval/evaluation.h"
#include "backend/arena.h"
#include "train/run.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

Config small_config() { return testing::small_config(13, 4, 6); }

std::vector<double> losses(const RoundLosses& l) { return {l.critic, l.generator, l.csem, l.kl}; }

TEST(Evaluation, EvaluatingOrChangingTopKNeverChangesTraining) {
  const Config cfg = small_config();
  Config other_k = cfg;
  other_k.top_k = 3;
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer quiet(cfg, data, *be), evaluated(cfg, data, *be), evaluated_k3(other_k, data, *be);
  for (int r = 1; r <= 3; ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    const RoundLosses a = quiet.train_round();
    const RoundLosses b = evaluated.train_round();
    evaluated.evaluate();
    evaluated.evaluate();
    const RoundLosses c = evaluated_k3.train_round();
    evaluated_k3.evaluate();
    EXPECT_EQ(losses(a), losses(b));
    EXPECT_EQ(losses(a), losses(c));
    EXPECT_EQ(quiet.training_state().noise_offset, evaluated.training_state().noise_offset);
  }
  // The same model evaluates to the same numbers every time.
  const EvalResult e1 = evaluated.evaluate(), e2 = evaluated.evaluate();
  EXPECT_EQ(e1.prec_at_k, e2.prec_at_k);
  EXPECT_EQ(e1.retrieved, e2.retrieved);
}

// Each round's evaluation draws fresh query noise (algorithm.md: fresh eps and z for every
// query, every time the model is evaluated), keyed by the rounds the model has trained: the
// same model evaluates alike for the same round and otherwise for another, and the trainer
// evaluates with its own round count.
TEST(Evaluation, EachRoundsEvaluationDrawsFreshNoise) {
  const Config cfg = small_config();
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer trainer(cfg, data, *be);
  trainer.train_round();
  trainer.train_round();
  // Unit-scale weights: two small rounds leave queries that rank the gallery alike whatever
  // their noise; these make each query's ranking depend on its draw.
  Model& model = trainer.model();
  std::mt19937 rng(7);
  for (Linear* l : {&model.condition, &model.gen1, &model.gen2, &model.gen3, &model.csem}) {
    std::normal_distribution<float> w(0.f, 1.f / std::sqrt(float(l->w.value.rows)));
    for (size_t i = 0; i < l->w.value.numel(); ++i) l->w.value.data[i] = w(rng);
  }
  const ModelDims& d = trainer.model().dims();
  DeviceBlock block(*be, align_up(data.text_features.data.size() * sizeof(float)) +
                             align_up(data.image_features.data.size() * sizeof(float)) +
                             2 * kAllocAlignment);
  Tensor texts = block.take(static_cast<int>(data.text_features.rows), d.text_dim);
  Tensor images = block.take(static_cast<int>(data.image_features.rows), d.image_dim);
  be->upload(texts, data.text_features.data.data());
  be->upload(images, data.image_features.data.data());
  Evaluator evaluator(*be, trainer.model(), data, texts, images, cfg.top_k, cfg.ap_divisor, cfg.seed);
  const EvalResult as_trained = trainer.evaluate();
  EXPECT_EQ(evaluator.evaluate(2).retrieved, as_trained.retrieved);
  EXPECT_EQ(evaluator.evaluate(2).retrieved, evaluator.evaluate(2).retrieved);
  EXPECT_NE(evaluator.evaluate(1).retrieved, as_trained.retrieved);
  EXPECT_NE(evaluator.evaluate(3).retrieved, as_trained.retrieved);
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(Evaluation, EvaluateOnACheckpointReproducesTheLoggedRound) {
  zscrgan_test::ScopedTempDir dir;
  Config cfg = small_config();
  cfg.rounds = 4;
  cfg.device = DeviceChoice::Cpu;
  cfg.output_dir = dir.file("run");
  std::ostringstream log;
  const RunSummary summary = run_training(cfg, log);
  const std::vector<nlohmann::json> rounds = read_metrics(dir.file("run/metrics.jsonl"));
  ASSERT_EQ(rounds.size(), 4u) << log.str();
  ASSERT_GE(summary.best_round, 1);

  auto evaluate = [&](const std::string& checkpoint) {
    EvaluateOptions o;
    o.checkpoint = dir.file("run/checkpoints/" + checkpoint);
    o.device = "cpu";
    std::ostringstream out;
    const uint64_t reads = checkpoint_files_read();
    const EvalResult r = run_evaluate(o, out);
    EXPECT_EQ(checkpoint_files_read() - reads, 1u) << "evaluate reads its checkpoint once";
    return r;
  };
  const EvalResult last = evaluate("last.safetensors");
  EXPECT_EQ(last.prec_at_k, rounds.back()["prec_at_k"].get<double>());
  EXPECT_EQ(last.map_at_k, rounds.back()["map_at_k"].get<double>());
  EXPECT_EQ(last.top1, rounds.back()["top1"].get<double>());
  const nlohmann::json& best_line = rounds[summary.best_round - 1];
  const EvalResult best = evaluate("best.safetensors");
  EXPECT_EQ(best.prec_at_k, best_line["prec_at_k"].get<double>());
  EXPECT_EQ(best.map_at_k, best_line["map_at_k"].get<double>());
  EXPECT_EQ(best.top1, best_line["top1"].get<double>());
  EXPECT_EQ(best.prec_at_k, summary.best_score);
}

// A one-round CPU run of small_config() trained into dir/run; returns its config.
Config train_one_round(const zscrgan_test::ScopedTempDir& dir, bool tf32 = false) {
  Config cfg = small_config();
  cfg.rounds = 1;
  cfg.device = DeviceChoice::Cpu;
  cfg.tf32 = tf32;
  cfg.output_dir = dir.file("run");
  std::ostringstream log;
  run_training(cfg, log);
  return cfg;
}

// Options evaluating that run's last checkpoint on the CPU.
EvaluateOptions evaluate_last_checkpoint(const zscrgan_test::ScopedTempDir& dir) {
  EvaluateOptions o;
  o.checkpoint = dir.file("run/checkpoints/last.safetensors");
  o.device = "cpu";
  return o;
}

// evaluate selects its backend with the run's tf32 setting, as training did (on the CPU the
// setting changes no number; selecting with it is what says so).
TEST(Evaluation, EvaluateTakesTheRunsTf32Setting) {
  zscrgan_test::ScopedTempDir dir;
  train_one_round(dir, /*tf32=*/true);
  std::ostringstream out;
  run_evaluate(evaluate_last_checkpoint(dir), out);
  EXPECT_NE(out.str().find("tf32 applies to CUDA GEMMs only"), std::string::npos) << out.str();
}

// evaluate --set takes the keys evaluation reads and refuses any other, which would change
// nothing: the model's shape and weights are the checkpoint's.
TEST(Evaluation, EvaluateRefusesKeysItDoesNotRead) {
  zscrgan_test::ScopedTempDir dir;
  const Config cfg = train_one_round(dir);
  auto evaluate = [&](const std::string& override_kv) {
    EvaluateOptions o = evaluate_last_checkpoint(dir);
    o.overrides = {override_kv};
    std::ostringstream out;
    return run_evaluate(o, out);
  };
  EXPECT_EQ(evaluate("top_k=3").k, 3);
  EXPECT_EQ(evaluate("seed=11").k, cfg.top_k);
  for (const std::string kv : {"gf_dim=16", "generator_lr=0.5", "rounds=9", "output_dir=\"x\""}) {
    try {
      evaluate(kv);
      ADD_FAILURE() << "evaluate took --set " << kv;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("evaluation does not read"), std::string::npos) << e.what();
    }
  }
  try {
    evaluate("device=\"cpu\"");
    ADD_FAILURE() << "evaluate took --set device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device"), std::string::npos) << e.what();
  }
}

// evaluate --config FILE takes its dataset from the file and says which of the file's model and
// training keys differ from the checkpoint's (they change nothing: the model is the checkpoint's).
TEST(Evaluation, EvaluateWithAConfigFileNotesTheModelKeysItDoesNotUse) {
  zscrgan_test::ScopedTempDir dir;
  const Config cfg = train_one_round(dir);
  auto evaluate_with = [&](const Config& file_cfg) {
    write_file_atomic(dir.file("c.json"), config_to_json(file_cfg));
    EvaluateOptions o = evaluate_last_checkpoint(dir);
    o.config = dir.file("c.json");
    std::ostringstream out;
    run_evaluate(o, out);
    return out.str();
  };
  Config same = cfg;
  same.rounds = 7;  // not a model key
  EXPECT_EQ(evaluate_with(same).find("note:"), std::string::npos);
  Config other = cfg;
  other.gf_dim = cfg.gf_dim * 2;
  other.generator_lr = cfg.generator_lr * 2;
  const std::string out = evaluate_with(other);
  EXPECT_NE(out.find(": generator_lr, gf_dim differ from the checkpoint's and are not used"), std::string::npos)
      << out;
}

// --resume reads and verifies checkpoints/last once (its config, parameters, optimizer state
// and standing all come from that one read); best is read once more to see which round it holds.
TEST(Evaluation, ResumeReadsTheCheckpointOnce) {
  zscrgan_test::ScopedTempDir dir;
  Config cfg = small_config();
  cfg.rounds = 2;
  cfg.device = DeviceChoice::Cpu;
  cfg.output_dir = dir.file("run");
  std::ostringstream log;
  const RunSummary first = run_training(cfg, log);
  ASSERT_GE(first.best_round, 1) << log.str();
  ASSERT_TRUE(std::filesystem::exists(dir.file("run/checkpoints/best.safetensors")));

  cfg.rounds = 3;
  RunOptions opts;
  opts.resume_dir = cfg.output_dir;
  const uint64_t reads = checkpoint_files_read();
  run_training(cfg, log, opts);
  EXPECT_EQ(checkpoint_files_read() - reads, 2u) << log.str();
}

}  // namespace
}  // namespace zscrgan
