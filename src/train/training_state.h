// A training run's state beyond its tensors, as values: what a checkpoint holds besides
// parameters and optimizer-state tensors. Trainer::training_state() takes the trainer's part
// and Trainer::restore_training_state() puts it back; the run's standing (RunState) is the
// caller's. train/checkpoint.cc writes and reads both.
#ifndef ZSCRGAN_TRAINING_STATE_H
#define ZSCRGAN_TRAINING_STATE_H

#include <cstdint>
#include <vector>

#include "train/sampler.h"

namespace zscrgan {

// The run's standing across rounds: kept by train/run.cc (the trainer does not use it) and
// saved in checkpoints beside the trainer's TrainingState.
struct RunState {
  double best_score = -1;       // best Precision@K so far (-1: none yet)
  int best_round = 0;
  double elapsed_s = 0;         // training seconds so far, over all sessions
};

// Where an unfinished round stands: saved in checkpoints, so that a run stopped between two
// steps resumes exactly where it stopped.
struct RoundProgress {
  bool in_round = false;
  int e_done = 0;                  // E-step iterations completed
  int csem_done = 0;               // CSEM steps completed (a multiple of the chunk size)
  uint64_t noise_base = 0;         // noise offset of the round's first draw
  std::vector<int32_t> rows;       // the round's sampled batch rows
  std::vector<float> step_losses;  // the losses logged so far
};

// Steps each optimizer has taken (Adam's bias correction and the step-count metadata).
struct OptimizerSteps {
  int64_t generator = 0;
  int64_t critic = 0;
  int64_t csem = 0;
};

// The trainer's state beyond tensors.
struct TrainingState {
  int round = 0;                // rounds completed
  uint64_t noise_offset = 0;    // next Philox offset of the training stream
  RoundProgress progress;       // the unfinished round (in_round false between rounds)
  OptimizerSteps optimizer_steps;
  SamplerState sampler;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_TRAINING_STATE_H
