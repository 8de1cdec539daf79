// A zero-shot retrieval dataset in memory, the interchange format on disk
// (datasets/README.md), and the embedded synthetic default.
#ifndef ZSCRGAN_DATASET_H
#define ZSCRGAN_DATASET_H

#include <cstdint>
#include <string>
#include <vector>

#include "zscrgan/npy.h"

namespace zscrgan {

struct Dataset {
  std::string name;
  HostMatrix image_features;           // N_img x D_img
  std::vector<int64_t> image_labels;   // N_img class ids
  HostMatrix text_features;            // N_txt x D_txt
  std::vector<int64_t> text_labels;    // N_txt class ids; a class's first text comes first
  std::vector<int64_t> train_classes;  // seen classes, in the order the sampler first walks them
  std::vector<int64_t> test_classes;   // unseen classes
};

// Checks the invariants every consumer relies on; `where` names the source in messages.
// Row counts match labels, splits are disjoint and non-empty, every split class has at least
// one image and one text, features are finite.
void validate_dataset(const Dataset& d, const std::string& where);

// Interchange format: dir/dataset.json + image_features.npy, image_labels.npy,
// text_features.npy, text_labels.npy.
Dataset load_dataset_folder(const std::string& dir);
// Writes into a temporary sibling folder and renames it into place: never half-written.
void write_dataset_folder(const Dataset& d, const std::string& dir);

// The embedded default: deterministic from its seed (see datasets/README.md).
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
Dataset make_synthetic_dataset(const SyntheticSpec& spec);

}  // namespace zscrgan

#endif  // ZSCRGAN_DATASET_H
