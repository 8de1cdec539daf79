#include "data/dataset_source.h"

#include <filesystem>
#include <string>
#include <system_error>

#include "core/error.h"

namespace zscrgan {

namespace fs = std::filesystem;

Dataset load_configured_dataset(const Config& cfg) {
  if (cfg.dataset == "synthetic") return make_synthetic_dataset(cfg.synthetic);
  const bool is_path = cfg.dataset.find('/') != std::string::npos;
  const std::string dir = is_path ? cfg.dataset : (fs::path(cfg.datasets_root) / cfg.dataset).string();
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // The paper's datasets are not shipped: say where the folder was looked for and how one
    // is made, beyond load_dataset_folder's plain "not found".
    std::string where = is_path ? "the config's dataset path"
                                : "dataset " + in_quotes(cfg.dataset) + " under datasets_root " +
                                      in_quotes(cfg.datasets_root);
    if (fs::path(dir).is_relative()) {
      const fs::path cwd = fs::current_path(ec);
      if (!ec) where += ", relative to " + in_quotes(cwd.string());
    }
    fail_file(dir, ": dataset folder not found (", where,
              "); configs/DATASETS.md says where each of the paper's datasets is published and "
              "which import command makes its folder");
  }
  return load_dataset_folder(dir);
}

}  // namespace zscrgan
