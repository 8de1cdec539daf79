#include "train/sampler.h"

#include <algorithm>
#include <unordered_map>

#include "backend/elementwise.h"
#include "core/error.h"

namespace zscrgan {

uint32_t HostRng::next_u32() {
  // Word (counter % 4) of Philox block (counter / 4): the whole state is (seed, counter).
  const uint64_t block = counter_ / 4;
  const int word = static_cast<int>(counter_ % 4);
  const Philox4 r = philox4x32_10({{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                    0x5A3B1E0Du, 0x00C1A55Eu}},
                                  static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32));
  ++counter_;
  return r.v[word];
}

uint32_t HostRng::uniform_below(uint32_t n) {
  ZS_CHECK(n > 0, "uniform_below(0)");
  const uint32_t limit = UINT32_MAX - UINT32_MAX % n;  // reject the biased tail
  for (;;) {
    const uint32_t x = next_u32();
    if (x < limit) return x % n;
  }
}

BatchSampler::BatchSampler(const Dataset& d, int batch_size, TrainTexts texts, uint64_t seed)
    : batch_size_(batch_size), texts_(texts), rng_(seed) {
  ZS_CHECK(batch_size > 0, "batch size ", batch_size);
  const size_t n_classes = d.train_classes.size();
  ZS_CHECK(n_classes > 0, "no train classes");
  std::unordered_map<int64_t, size_t> slot;
  for (size_t i = 0; i < n_classes; ++i) slot[d.train_classes[i]] = i;
  class_images_.resize(n_classes);
  class_texts_.resize(n_classes);
  for (size_t r = 0; r < d.image_labels.size(); ++r) {
    auto it = slot.find(d.image_labels[r]);
    if (it != slot.end()) class_images_[it->second].push_back(static_cast<int32_t>(r));
  }
  for (size_t r = 0; r < d.text_labels.size(); ++r) {
    auto it = slot.find(d.text_labels[r]);
    if (it != slot.end()) class_texts_[it->second].push_back(static_cast<int32_t>(r));
  }
  for (size_t i = 0; i < n_classes; ++i)
    if (class_images_[i].empty() || class_texts_[i].empty())
      fail("train class ", d.train_classes[i], " has no ",
           class_images_[i].empty() ? "images" : "texts");
  order_.resize(n_classes);
  for (size_t i = 0; i < n_classes; ++i) order_[i] = static_cast<int64_t>(i);  // first pass: given order
  cursor_.assign(n_classes, 0);
  scratch_.reserve(std::max<size_t>(n_classes, batch_size));
}

void BatchSampler::shuffle(std::vector<int64_t>& v) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng_.uniform_below(static_cast<uint32_t>(i))]);
}

int64_t BatchSampler::next_class() {
  if (position_ == static_cast<int64_t>(order_.size())) {
    shuffle(order_);
    position_ = 0;
  }
  return order_[position_++];
}

void BatchSampler::next(int32_t* image, int32_t* text, int32_t* wrong_image, int32_t* wrong_text) {
  const int b = batch_size_;
  const int64_t n_classes = static_cast<int64_t>(order_.size());
  scratch_.clear();
  if (b < n_classes) {
    for (int i = 0; i < b; ++i) scratch_.push_back(next_class());
  } else {
    for (int64_t rep = 0; rep < b / n_classes; ++rep)
      for (int64_t c = 0; c < n_classes; ++c) scratch_.push_back(c);
    const int64_t rest = b % n_classes;
    if (rest > 0) {
      // A random subset for the remainder: the first `rest` of a shuffled class list (this
      // path never walks order_ in passes, so it serves as that list).
      shuffle(order_);
      for (int64_t i = 0; i < rest; ++i) scratch_.push_back(order_[i]);
    }
    shuffle(scratch_);
  }
  for (int i = 0; i < b; ++i) {
    const int64_t c = scratch_[i];
    const auto& imgs = class_images_[c];
    cursor_[c] = (cursor_[c] + 1) % static_cast<int64_t>(imgs.size());
    image[i] = imgs[cursor_[c]];
    const auto& txts = class_texts_[c];
    text[i] = texts_ == TrainTexts::First ? txts[0]
                                          : txts[rng_.uniform_below(static_cast<uint32_t>(txts.size()))];
  }
  for (int i = 0; i < b; ++i) {  // row i takes row i-1's; row 0 takes the last row's
    const int from = (i + b - 1) % b;
    wrong_image[i] = image[from];
    wrong_text[i] = text[from];
  }
}

BatchRows BatchSampler::next() {
  BatchRows r;
  r.image.resize(batch_size_);
  r.text.resize(batch_size_);
  r.wrong_image.resize(batch_size_);
  r.wrong_text.resize(batch_size_);
  next(r.image.data(), r.text.data(), r.wrong_image.data(), r.wrong_text.data());
  return r;
}

SamplerState BatchSampler::state() const {
  return SamplerState{order_, position_, cursor_, rng_.seed(), rng_.counter()};
}

void BatchSampler::restore(const SamplerState& s) {
  const size_t n = order_.size();
  if (s.class_order.size() != n || s.image_cursor.size() != n || s.position < 0 ||
      s.position > static_cast<int64_t>(n))
    fail("sampler state does not fit this dataset (", n, " train classes)");
  std::vector<int64_t> sorted = s.class_order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < n; ++i)
    if (sorted[i] != static_cast<int64_t>(i)) fail("sampler state: class order is not a permutation");
  for (size_t i = 0; i < n; ++i)
    if (s.image_cursor[i] < 0 || s.image_cursor[i] >= static_cast<int64_t>(class_images_[i].size()))
      fail("sampler state: image cursor out of range for class slot ", i);
  order_ = s.class_order;
  position_ = s.position;
  cursor_ = s.image_cursor;
  rng_ = HostRng(s.rng_seed, s.rng_counter);
}

}  // namespace zscrgan
