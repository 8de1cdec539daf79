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

#include <cstdint>
#include <string>
#include <vector>

#include "zscrgan/config.h"
#include "zscrgan/model.h"
#include "zscrgan/safetensors.h"
#include "zscrgan/trainer.h"

namespace zscrgan {

constexpr const char* kCheckpointFormat = "zscrgan-checkpoint/1";

// Writes atomically (temporary file, flush, rename): a crash at any instant leaves the previous
// file intact. The metadata records a content hash of the metadata and the tensors.
void save_checkpoint(Trainer& trainer, const std::string& path);

// A checkpoint read from disk and verified once (its format, the metadata keys every checkpoint
// has, and the content hash over metadata and tensors). The functions below that take one read
// nothing more, so a command that needs the config, the dimensions and the parameters reads
// and hashes the file once; each function that takes a path opens it itself.
struct OpenedCheckpoint {
  std::string path;
  SafeTensorsFile file;
};
OpenedCheckpoint open_checkpoint(const std::string& path);

// How many checkpoint files this process has read and verified so far (every read goes
// through open_checkpoint); tests use it to check that a command reads its checkpoint once.
uint64_t checkpoint_files_read();

// Restores everything save_checkpoint wrote into a trainer built from a compatible config.
// Refuses, naming the tensor or the key, a checkpoint whose shapes, dtypes or training-relevant
// config differ.
void load_checkpoint(Trainer& trainer, const std::string& path);
void load_checkpoint(Trainer& trainer, const OpenedCheckpoint& checkpoint);

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

// The effective config stored in a checkpoint (for --resume without --config, and for
// inference), with "key=value" overrides applied as on the command line.
Config checkpoint_config(const std::string& path, const std::vector<std::string>& overrides = {});
Config checkpoint_config(const OpenedCheckpoint& checkpoint,
                         const std::vector<std::string>& overrides = {});

// The model's dimensions as the checkpoint's parameter shapes give them.
ModelDims checkpoint_model_dims(const std::string& path);
ModelDims checkpoint_model_dims(const OpenedCheckpoint& checkpoint);

// Loads only the parameters (for inference): refuses, naming the tensor, any shape mismatch.
void load_model_parameters(Model& model, const std::string& path);
void load_model_parameters(Model& model, const OpenedCheckpoint& checkpoint);

// Config keys that may differ between a checkpoint and the run resuming it (how long to run,
// where to write, which device).
bool resumable_key(const std::string& key);

}  // namespace zscrgan

#endif  // ZSCRGAN_CHECKPOINT_H
