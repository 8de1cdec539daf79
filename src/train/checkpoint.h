// A training run's checkpoint (the file layout is model/checkpoint_file.h's): every parameter
// and optimizer-state tensor, the optimizers' step counts, the noise offset, the sampler's
// state, the unfinished round's progress, the round, the best score, and the effective config.
#ifndef ZSCRGAN_CHECKPOINT_H
#define ZSCRGAN_CHECKPOINT_H

#include <cstdint>
#include <string>
#include <vector>

#include "model/checkpoint_file.h"
#include "train/trainer.h"
#include "train/training_state.h"

namespace zscrgan {

// Writes atomically (temporary file, flush, rename): a crash at any instant leaves the previous
// file intact. The metadata records a content hash of the metadata and the tensors.
// `run` is the run's standing (best score and round, elapsed seconds) saved beside the
// trainer's state.
void save_checkpoint(Trainer& trainer, const RunState& run, const std::string& path);

// Restores everything save_checkpoint wrote into a trainer built from a compatible config.
// Refuses, naming the tensor or the key, a checkpoint whose shapes, dtypes or training-relevant
// config differ. Returns the run's standing it records.
RunState load_checkpoint(Trainer& trainer, const std::string& path);
RunState load_checkpoint(Trainer& trainer, const OpenedCheckpoint& checkpoint);

// Where a checkpoint stands: its completed rounds, the best round and score it records, and
// whether it was saved inside a round. The file is verified as load_checkpoint verifies it.
struct CheckpointStanding {
  int round = 0;
  int best_round = 0;
  double best_score = 0;
  bool in_round = false;
};
CheckpointStanding checkpoint_standing(const std::string& path);
CheckpointStanding checkpoint_standing(const OpenedCheckpoint& checkpoint);

}  // namespace zscrgan

#endif  // ZSCRGAN_CHECKPOINT_H
