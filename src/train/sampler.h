// The class-balanced batch sampler (algorithm.md, "One batch").
// Classes are walked in chunks of B from a list that is the given order on the first pass and
// reshuffled each time it runs out; a batch that reaches the end of a pass is completed from
// the next pass, so every batch is full (the published sampler returned a short, zero-padded
// batch there, a defect). When B >= C, each batch holds every class floor(B / C) times plus a
// random subset of the remainder, in random order. Each class's image cursor advances before
// use (the first image used of a class is its second). Wrong pairs roll the batch by one row.
#ifndef ZSCRGAN_SAMPLER_H
#define ZSCRGAN_SAMPLER_H

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/dataset.h"

namespace zscrgan {

// A small counter-based generator for host-side choices; its whole state is two integers.
class HostRng {
 public:
  explicit HostRng(uint64_t seed = 0, uint64_t counter = 0) : seed_(seed), counter_(counter) {}
  uint32_t next_u32();
  uint32_t uniform_below(uint32_t n);  // unbiased, n > 0
  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }

 private:
  uint64_t seed_;
  uint64_t counter_;
};

// Everything a resumed run needs to continue the same sequence of batches.
struct SamplerState {
  std::vector<int64_t> class_order;   // current pass order, as indices into train_classes
  int64_t position = 0;               // next slot in class_order
  std::vector<int64_t> image_cursor;  // per train class
  uint64_t rng_seed = 0;
  uint64_t rng_counter = 0;
};

struct BatchRows {
  std::vector<int32_t> image, text;              // B rows each, into the dataset's arrays
  std::vector<int32_t> wrong_image, wrong_text;  // rolled by one row
};

class BatchSampler {
 public:
  BatchSampler(const Dataset& d, int batch_size, TrainTexts texts, uint64_t seed);

  // Writes one batch's rows (each array holds batch_size entries).
  void next(int32_t* image, int32_t* text, int32_t* wrong_image, int32_t* wrong_text);
  BatchRows next();

  int batch_size() const { return batch_size_; }
  SamplerState state() const;
  void restore(const SamplerState& s);  // throws when it does not fit this dataset

 private:
  int64_t next_class();  // index into train classes (B < C path)
  void shuffle(std::vector<int64_t>& v);

  int batch_size_;
  TrainTexts texts_;
  std::vector<std::vector<int32_t>> class_images_, class_texts_;
  std::vector<int64_t> order_;
  int64_t position_ = 0;
  std::vector<int64_t> cursor_;
  HostRng rng_;
  std::vector<int64_t> scratch_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_SAMPLER_H
