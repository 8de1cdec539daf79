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

// What a checkpoint records of the data it was trained on, so that a run resumes only on the
// same data: the shapes, and a content hash of the features, labels and splits in row order (a
// renamed or moved dataset folder is the same data; a re-extracted or re-ordered one is not).
struct DatasetIdentity {
  int64_t images = 0, image_dim = 0, texts = 0, text_dim = 0;
  int64_t seen_classes = 0, unseen_classes = 0;
  std::string content_hash;  // 16 hex digits (core/content_hash.h)
  // "1200 images x 2048, 150 texts x 1024, 40 seen and 10 unseen classes"
  std::string describe() const;
};
DatasetIdentity dataset_identity(const Dataset& d);

// Interchange format: dir/dataset.json + image_features.npy, image_labels.npy,
// text_features.npy, text_labels.npy.
Dataset load_dataset_folder(const std::string& dir);
// Writes into a temporary sibling folder and renames it into place: never half-written.
void write_dataset_folder(const Dataset& d, const std::string& dir);


}  // namespace zscrgan

#endif  // ZSCRGAN_DATASET_H
