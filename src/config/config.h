// The run configuration: the published hyper-parameter names unchanged, plus ours.
// Every key is one row of the table in config.cc (its type, range, meaning and whether a
// resumed run may change it); parsing, config_to_json, the resume check and configs/README.md's
// key list (config_keys_markdown) all come from that table. The defaults are the ones below.
#ifndef ZSCRGAN_CONFIG_H
#define ZSCRGAN_CONFIG_H

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace zscrgan {

// The values of the enum-valued keys; their names (as written in JSON) live beside the table.
// The divisor D of AP@K = sum_{r<=K} P@r * rel_r / D.
enum class ApDivisor {
  RelevantInTopK,  // "relevant_in_top_k": D = relevant items among the top K (the default)
  MinRelevantK,    // "min_relevant_k": D = min(relevant items of the class in the gallery, K)
};
// The texts used for the seen classes.
enum class TrainTexts {
  First,  // "first": each class's first text (published)
  All,    // "all": all of them
};
// The device a command computes on.
enum class DeviceChoice {
  Auto,  // "auto": the GPU when one is usable, else the CPU
  Cpu,   // "cpu"
  Cuda,  // "cuda"
};
// The best-retrieval records a run writes under retrieved/.
enum class RetrievalRecord {
  Json,  // "json"
  Pkl,   // "pkl": the published acc<P@K>.pkl
  Both,  // "both"
};

// The embedded default dataset's shape: generated deterministically from its seed by
// make_synthetic_dataset (data/dataset_source.h; see datasets/README.md).
struct SyntheticSpec {
  int seen_classes = 40;
  int unseen_classes = 20;
  int images_per_class = 60;
  int texts_per_class = 4;
  int text_dim = 64;
  int image_dim = 128;
  int latent_dim = 16;
  float text_noise = 0.4f;   // std of the noise added to a text's view of its class latent
  float image_noise = 0.6f;  // std of the noise added to an image's view of its class latent
  uint64_t seed = 7;
};

struct Config {
  // ---- the published names ----
  int batch_size = 32;
  int gf_dim = 2048;
  int df_dim = 1024;
  int embed_dim = 1024;
  double CSEM_lr = 0.002;
  double generator_lr = 0.0002;
  double discriminator_lr = 0.0002;
  int epochs = 5000;  // declared by the published code, unused by its loop; accepted, unused
  double kl_div_coefficient = 1.0;
  double mm_reg_coeff = 2.0;
  int z_dim = 256;
  double clip_val = 0.01;
  std::string dataset = "synthetic";  // folder under datasets_root, or "synthetic"

  // ---- ours ----
  int rounds = 20;               // EM rounds to run
  double time_budget_s = 0;      // stop after the round that crosses this; 0: no budget
  int e_step_iters = 100;        // E-step: this many x (n_critic D steps + 1 G step)
  int n_critic = 5;
  int m_step_iters = 100;        // M-step: CSEM steps
  int top_k = 50;
  ApDivisor ap_divisor = ApDivisor::RelevantInTopK;
  TrainTexts train_texts = TrainTexts::First;
  uint64_t seed = 0;
  DeviceChoice device = DeviceChoice::Auto;
  bool tf32 = false;            // TF32 tensor-core GEMMs on CUDA
  bool cuda_graphs = true;      // replay captured E-step iterations and CSEM steps on CUDA
  std::string output_dir = "runs/default";
  RetrievalRecord retrieval_record = RetrievalRecord::Json;  // best-retrieval records written
  std::string datasets_root = "datasets";
  SyntheticSpec synthetic;      // used when dataset == "synthetic"
};

// Parses and strictly validates a JSON config file; `overrides` are "key=value" pairs from the
// command line (dotted keys reach nested objects, e.g. synthetic.seed=3). Any error names the
// file and the key path.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses from text; `source` names it in errors.
Config parse_config(const std::string& json_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
// The effective configuration, every key, as pretty-printed JSON.
std::string config_to_json(const Config& c);

// Whether a resumed run may give key `key` (a table path, as config_to_json writes it) another
// value than its checkpoint holds: the keys that say how long, where and on what to run, and
// how rounds are evaluated and recorded. False for the nested object ("synthetic") and its keys,
// and for a key that does not exist.
bool config_key_resumable(const std::string& key);

// configs/README.md's key list (the text between its two marker lines): one table row per
// key, type, default (from a default Config), range and meaning, under each group's heading.
std::string config_keys_markdown();

// The names of the enum-valued keys' values, as JSON holds them ("relevant_in_top_k", ...).
const char* to_string(ApDivisor v);
const char* to_string(TrainTexts v);
const char* to_string(DeviceChoice v);
const char* to_string(RetrievalRecord v);
// The value called `name`; any other name is an Error
// "<what> must be one of <names, comma-separated>; got "<name>"", e.g. what = "--device".
// Defined for ApDivisor, TrainTexts, DeviceChoice and RetrievalRecord.
template <typename Enum>
Enum from_string(const std::string& name, const std::string& what);

}  // namespace zscrgan

#endif  // ZSCRGAN_CONFIG_H
