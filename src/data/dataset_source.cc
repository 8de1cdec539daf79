#include "data/dataset_source.h"

#include <filesystem>
#include <string>

namespace zscrgan {

Dataset load_configured_dataset(const Config& cfg) {
  if (cfg.dataset == "synthetic") return make_synthetic_dataset(cfg.synthetic);
  const bool is_path = cfg.dataset.find('/') != std::string::npos;
  const std::string dir = is_path ? cfg.dataset : (std::filesystem::path(cfg.datasets_root) / cfg.dataset).string();
  return load_dataset_folder(dir);
}

}  // namespace zscrgan
