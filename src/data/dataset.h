// A zero-shot retrieval dataset in memory and the interchange format on disk
// (datasets/README.md).
#ifndef ZSCRGAN_DATASET_H
#define ZSCRGAN_DATASET_H

#include <cstdint>
#include <string>
#include <vector>

#include "formats/npy.h"

namespace zscrgan {

struct Dataset {
  std::string name;
  HostMatrix image_features;           // N_img x D_img
  std::vector<int64_t> image_labels;   // N_img class ids
  HostMatrix text_features;            // N_txt x D_txt
  std::vector<int64_t> text_labels;    // N_txt class ids; a class's first text is its lowest row
  std::vector<int64_t> train_classes;  // seen classes, in the order the sampler first walks them
  std::vector<int64_t> test_classes;   // unseen classes
};

// Checks the invariants every consumer relies on; `where` names the source in messages.
// Row counts match labels, widths are > 0, splits are disjoint and non-empty, every label is a
// split class, every split class has at least one image and one text, features are finite.
void validate_dataset(const Dataset& d, const std::string& where);

// Interchange format: dir/dataset.json + image_features.npy, image_labels.npy,
// text_features.npy, text_labels.npy.
Dataset load_dataset_folder(const std::string& dir);
// Writes into a temporary sibling folder and renames it into place: never half-written.
void write_dataset_folder(const Dataset& d, const std::string& dir);


}  // namespace zscrgan

#endif  // ZSCRGAN_DATASET_H
