// Internal: one reader per published format, dispatched by import_dataset (importers.h).
#ifndef ZSCRGAN_SRC_IMPORT_FORMATS_H
#define ZSCRGAN_SRC_IMPORT_FORMATS_H

#include <string>

#include "data/dataset.h"
#include "import/importers.h"

namespace zscrgan {
namespace detail {

// xlsa17 (Xian et al.'s "proposed splits"): res101.mat + att_splits.mat.
Dataset import_xlsa17(const ImportOptions& options);
// GAZSL's CUB2011 / NABird folders: TF-IDF class texts, split files, pfc_feat features and labels.
Dataset import_gazsl(const ImportOptions& options);

// The name a dataset gets when the options give none: the last component of `path` (the output
// folder, or the input when there is no output), or "dataset".
std::string default_dataset_name(const std::string& path);

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_IMPORT_FORMATS_H
