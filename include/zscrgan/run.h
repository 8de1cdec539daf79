// A whole training run as the CLI drives it: backend selection, dataset, rounds, evaluation,
// terminal progress, metrics.jsonl and the best retrieval records.
#ifndef ZSCRGAN_RUN_H
#define ZSCRGAN_RUN_H

#include <iosfwd>
#include <memory>
#include <string>

#include "zscrgan/backend.h"
#include "zscrgan/config.h"
#include "zscrgan/dataset.h"

namespace zscrgan {

// "auto": the GPU when one is usable (said on `note`), else the CPU with a one-line notice.
// "cuda": the GPU or an Error saying why not. "cpu": the CPU.
std::unique_ptr<Backend> select_backend(const std::string& device, std::ostream& note);

// The dataset a config names: "synthetic", a folder under datasets_root, or a path.
Dataset load_configured_dataset(const Config& cfg);

struct RunSummary {
  int rounds = 0;
  double best_score = 0;
  int best_round = 0;
  double train_seconds = 0;
};

// Trains cfg.rounds rounds (or until cfg.time_budget_s), evaluating after each.
RunSummary run_training(const Config& cfg, std::ostream& out);

}  // namespace zscrgan

#endif  // ZSCRGAN_RUN_H
