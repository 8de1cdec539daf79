// A training run's output folder (cfg.output_dir): its layout and what is written there.
//
//   config.json            the effective configuration
//   metrics.jsonl          one line per round
//   checkpoints/last.safetensors, checkpoints/best.safetensors
//   retrieved/acc<P@K>.json  (and .pkl) the best round's retrieval record
//
// open() makes the folder ready before the first round: a fresh run clears what an earlier
// run left (run_training allows that only when asked to overwrite); a resumed run repairs what
// a run killed mid-round left (a missing, stale or unreadable best checkpoint, metrics lines of
// a round the checkpoint does not hold).
#ifndef ZSCRGAN_RUN_OUTPUT_H
#define ZSCRGAN_RUN_OUTPUT_H

#include <iosfwd>
#include <memory>
#include <string>

#include "config/config.h"
#include "eval/evaluation.h"
#include "model/checkpoint_file.h"

namespace zscrgan {

// Which files a best round's retrieval record is written as.
struct RetrievalRecords {
  bool json = true;    // retrieved/acc<P@K>.json: [{"query_class", "retrieved_classes"}, ...]
  bool pickle = false; // retrieved/acc<P@K>.pkl: the original's [{query class: [classes]}, ...]
};

class RunOutput {
 public:
  RunOutput(const std::string& output_dir, RetrievalRecords records);

  std::string last_checkpoint() const;  // checkpoints/last.safetensors
  std::string best_checkpoint() const;  // checkpoints/best.safetensors

  // Creates retrieved/ and checkpoints/ and removes temporaries killed writers left. A fresh
  // run (resumed null) then removes an earlier run's records, metrics and checkpoints. A
  // resumed run (resumed: the checkpoint it loaded, holding `rounds` rounds) moves a best
  // checkpoint it cannot read aside (best.safetensors.damaged), rebuilds one missing or stale
  // because the run stopped between writing last and best (or moved aside), and
  // keeps only the metrics lines of rounds the checkpoint holds; `resumed` is released once
  // read. Writes config.json last. Notes what it repaired on `out`.
  void open(const Config& cfg, std::shared_ptr<const OpenedCheckpoint> resumed, int rounds,
            std::ostream& out);

  // Appends one round's metrics.jsonl line.
  void append_metrics(const std::string& line);
  // Writes the retrieval record of a round that beat the best, named by its Precision@K.
  void write_best_retrieval(const EvalResult& ev);

 private:
  std::string dir_;
  RetrievalRecords records_;
};

// A file of an earlier run in output_dir (its last or best checkpoint, metrics or a retrieval
// record), or "" when the folder holds none: a fresh run there would remove it.
std::string earlier_run_file(const std::string& output_dir);

// The record's file name without its extension: "acc" and Precision@K to 4 places.
std::string retrieval_record_base_name(double prec_at_k);

}  // namespace zscrgan

#endif  // ZSCRGAN_RUN_OUTPUT_H
