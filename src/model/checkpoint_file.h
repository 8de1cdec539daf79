// Checkpoint files (safetensors, readable by numpy, PyTorch and the `safetensors` library):
// reading and verifying one, and what inference takes from it (the config, the model's
// dimensions, the parameters). Writing and resuming a training run's checkpoint is
// train/checkpoint.h's.
//
// Tensor names: "param/<layer>.w|b", "state/optimizer.<group>.<slot>", "sampler/class_order",
// "sampler/image_cursor", "round/rows", "round/step_losses". Metadata: "format", "config"
// (JSON), "run" (JSON: round, noise_offset, best_score, best_round, elapsed_s, optimizer
// steps, sampler position and RNG, round progress), "content_hash".
#ifndef ZSCRGAN_CHECKPOINT_FILE_H
#define ZSCRGAN_CHECKPOINT_FILE_H

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "formats/safetensors.h"
#include "model/model.h"

namespace zscrgan {

constexpr const char* kCheckpointFormat = "zscrgan-checkpoint/1";

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

// The effective config stored in a checkpoint (for --resume without --config, and for
// inference), with "key=value" overrides applied as on the command line.
Config checkpoint_config(const std::string& path, const std::vector<std::string>& overrides = {});
Config checkpoint_config(const OpenedCheckpoint& checkpoint,
                         const std::vector<std::string>& overrides = {});

// How many rounds the checkpoint's model has trained (its run state's "round"): with the seed,
// it keys the evaluation noise that round's evaluation drew (model/encoder.h).
int64_t checkpoint_rounds_trained(const OpenedCheckpoint& checkpoint);

// The model's dimensions as the checkpoint's parameter shapes give them.
ModelDims checkpoint_model_dims(const std::string& path);
ModelDims checkpoint_model_dims(const OpenedCheckpoint& checkpoint);

// Loads only the parameters (for inference): refuses, naming the tensor, any shape mismatch.
void load_model_parameters(Model& model, const std::string& path);
void load_model_parameters(Model& model, const OpenedCheckpoint& checkpoint);

// ---- for the training side, which writes checkpoints (train/checkpoint.cc) ----
// A 64-bit hash of every metadata entry but "content_hash" and of every tensor's name and
// bytes; with_metadata = false is the tensors-only hash of earlier builds, recognised to refuse
// such files with a clear message.
std::string checkpoint_content_hash(const SafeTensorsFile& f, bool with_metadata = true);
// Downloads `tensors` into f as float32 under prefix + name, and the reverse (shapes checked).
void add_checkpoint_tensors(SafeTensorsFile& f, Backend& be, const std::vector<NamedTensor>& tensors,
                            const std::string& prefix);
void load_checkpoint_tensors(const SafeTensorsFile& f, Backend& be,
                             const std::vector<NamedTensor>& tensors, const std::string& prefix);
// A metadata entry parsed as strict JSON; errors name the file and the key.
nlohmann::json parse_checkpoint_metadata_json(const SafeTensorsFile& f, const std::string& key);

}  // namespace zscrgan

#endif  // ZSCRGAN_CHECKPOINT_FILE_H
