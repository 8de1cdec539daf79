// Training checkpoints in the safetensors format (readable by numpy, PyTorch and the
// `safetensors` library): every parameter and optimizer-state tensor, the optimizers' step
// counts, the noise offset, the sampler's state, the unfinished round's progress, the round,
// the best score, and the effective config in the metadata.
//
// Tensor names: "param/<layer>.w|b", "state/optimizer.<group>.<slot>", "sampler/class_order",
// "sampler/image_cursor", "round/rows", "round/step_losses". Metadata: "format", "config"
// (JSON), "run" (JSON: round, noise_offset, best_score, best_round, elapsed_s, optimizer
// steps, sampler position and RNG, round progress).
#ifndef ZSCRGAN_CHECKPOINT_H
#define ZSCRGAN_CHECKPOINT_H

#include <string>

#include <vector>

#include "zscrgan/config.h"
#include "zscrgan/model.h"
#include "zscrgan/trainer.h"

namespace zscrgan {

constexpr const char* kCheckpointFormat = "zscrgan-checkpoint/1";

// Writes atomically (temporary file, flush, rename): a crash at any instant leaves the previous
// file intact. The metadata records a content hash of the metadata and the tensors.
void save_checkpoint(Trainer& trainer, const std::string& path);

// Restores everything save_checkpoint wrote into a trainer built from a compatible config.
// Refuses, naming the tensor or the key, a checkpoint whose shapes, dtypes or training-relevant
// config differ.
void load_checkpoint(Trainer& trainer, const std::string& path);

// Where a checkpoint stands: its completed rounds, the best round and score it records, and
// whether it was saved inside a round. The file is verified as load_checkpoint verifies it.
struct CheckpointStanding {
  int round = 0;
  int best_round = 0;
  double best_score = 0;
  bool in_round = false;
};
CheckpointStanding checkpoint_standing(const std::string& path);

// The effective config stored in a checkpoint (for --resume without --config, and for
// inference), with "key=value" overrides applied as on the command line.
Config checkpoint_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The model's dimensions as the checkpoint's parameter shapes give them.
ModelDims checkpoint_model_dims(const std::string& path);

// Loads only the parameters (for inference): refuses, naming the tensor, any shape mismatch.
void load_model_parameters(Model& model, const std::string& path);

// Config keys that may differ between a checkpoint and the run resuming it (how long to run,
// where to write, which device).
bool resumable_key(const std::string& key);

}  // namespace zscrgan

#endif  // ZSCRGAN_CHECKPOINT_H
