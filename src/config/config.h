// The run configuration: the published hyper-parameter names unchanged, plus ours.
// Every key, its meaning and its default are listed in configs/README.md.
#ifndef ZSCRGAN_CONFIG_H
#define ZSCRGAN_CONFIG_H

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace zscrgan {

// The embedded default dataset's shape: generated deterministically from its seed by
// make_synthetic_dataset (data/synthetic.h; see datasets/README.md).
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
  std::string ap_divisor = "relevant_in_top_k";  // or "min_relevant_k" (min(relevant in gallery, K))
  std::string train_texts = "first";             // "first" (published) or "all"
  uint64_t seed = 0;
  std::string device = "auto";  // auto | cpu | cuda
  bool tf32 = false;            // TF32 tensor-core GEMMs on CUDA
  bool cuda_graphs = true;      // replay captured E-step iterations and CSEM steps on CUDA
  std::string output_dir = "runs/default";
  // Best-retrieval records written under retrieved/: "json", "pkl" (the published
  // acc<P@K>.pkl: a pickled list of one-key dicts, query class -> retrieved images' classes)
  // or "both".
  std::string retrieval_record = "json";
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

}  // namespace zscrgan

#endif  // ZSCRGAN_CONFIG_H
