// A whole training run as the CLI drives it: backend selection, dataset, rounds, evaluation,
// terminal progress, metrics.jsonl and the best retrieval records.
#ifndef ZSCRGAN_RUN_H
#define ZSCRGAN_RUN_H

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "config/config.h"
#include "data/dataset.h"

namespace zscrgan {

struct OpenedCheckpoint;

struct RunSummary {
  int rounds = 0;
  double best_score = 0;
  int best_round = 0;
  double train_seconds = 0;
  int stopped_by_signal = 0;  // SIGINT or SIGTERM when the run stopped early for one
  bool stopped_by_caller = false;  // should_stop or on_round asked the run to stop
  // This session's rounds, each as its metrics.jsonl line (JSON text).
  std::vector<std::string> round_records;
};

struct RunOptions {
  std::string resume_dir;  // continue the run whose output_dir this is (its checkpoints/last)
  // A fresh run into a folder holding an earlier run replaces it only when this is set;
  // otherwise it stops before touching anything, naming the earlier run's file.
  bool overwrite = false;
  // resume_dir's checkpoints/last when the caller has already opened it (to read its config),
  // so that it is not read again; opened here when null.
  std::shared_ptr<const OpenedCheckpoint> resume_checkpoint;
  // The dataset to train on instead of the one the config names (an embedding program's
  // arrays); validated as a loaded one is.
  std::shared_ptr<const Dataset> dataset;
  // Called after each round with its metrics.jsonl line (JSON text), after its checkpoint is
  // written; returning false ends the run there.
  std::function<bool(const std::string& round_record)> on_round;
  // Polled between steps, as the stop signals are: true stops the run the way SIGINT does
  // (the current step finishes, checkpoints/last is written).
  std::function<bool()> should_stop;
};

// Trains cfg.rounds rounds (or until cfg.time_budget_s), evaluating after each, writing
// checkpoints/last after every round and checkpoints/best when a round beats the best.
// SIGINT/SIGTERM finish the current step, write checkpoints/last and return with
// stopped_by_signal set; should_stop and on_round do the same with stopped_by_caller set.
RunSummary run_training(const Config& cfg, std::ostream& out, RunOptions opts = {});

}  // namespace zscrgan

#endif  // ZSCRGAN_RUN_H
