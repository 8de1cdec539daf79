// Where a run's dataset comes from: the embedded synthetic default (a deterministic function
// of its SyntheticSpec) or a folder in the interchange format.
#ifndef ZSCRGAN_DATASET_SOURCE_H
#define ZSCRGAN_DATASET_SOURCE_H

#include "config/config.h"
#include "data/dataset.h"

namespace zscrgan {

Dataset make_synthetic_dataset(const SyntheticSpec& spec);

// The dataset a config names: "synthetic", a folder under datasets_root, or a path (a name
// holding a '/', taken as it is).
Dataset load_configured_dataset(const Config& cfg);

}  // namespace zscrgan

#endif  // ZSCRGAN_DATASET_SOURCE_H
