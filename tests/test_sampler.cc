// The class-balanced sampler: first pass in the given order, full batches, balance, the image
// cursor, the first text, the rolled wrong pairs, and state save/restore.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "train/sampler.h"

namespace zscrgan {
namespace {

// Class c (ids 10, 20, ...) has c+2 images and 2 texts; rows are interleaved across classes.
Dataset tiny_dataset(int classes) {
  Dataset d;
  d.name = "tiny";
  for (int c = 0; c < classes; ++c) d.train_classes.push_back(10 * (c + 1));
  d.test_classes = {999};
  for (int k = 0; k < classes + 2; ++k)
    for (int c = 0; c < classes; ++c)
      if (k < c + 2) d.image_labels.push_back(10 * (c + 1));
  for (int k = 0; k < 2; ++k)
    for (int c = 0; c < classes; ++c) d.text_labels.push_back(10 * (c + 1));
  d.image_labels.push_back(999);
  d.text_labels.push_back(999);
  d.image_features.rows = static_cast<int64_t>(d.image_labels.size());
  d.image_features.cols = 1;
  d.image_features.data.assign(d.image_labels.size(), 1.f);
  d.text_features.rows = static_cast<int64_t>(d.text_labels.size());
  d.text_features.cols = 1;
  d.text_features.data.assign(d.text_labels.size(), 1.f);
  return d;
}

TEST(Sampler, FirstPassWalksTheGivenOrderThenBatchesStayFullAndBalanced) {
  const Dataset d = tiny_dataset(7);
  BatchSampler s(d, 3, TrainTexts::First, 1);
  std::map<int64_t, int> count;
  std::vector<int64_t> first_pass;
  for (int batch = 0; batch < 7; ++batch) {  // 21 draws = 3 full passes over 7 classes
    BatchRows r = s.next();
    ASSERT_EQ(r.image.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const int64_t c = d.image_labels[r.image[i]];
      EXPECT_EQ(d.text_labels[r.text[i]], c);
      if (first_pass.size() < 7) first_pass.push_back(c);
      ++count[c];
    }
  }
  EXPECT_EQ(first_pass, d.train_classes);
  for (int64_t c : d.train_classes) EXPECT_EQ(count[c], 3) << "class " << c;
}

TEST(Sampler, BatchLargerThanTheClassCountHoldsEveryClassFloorTimesPlusARemainder) {
  const Dataset d = tiny_dataset(4);
  BatchSampler s(d, 10, TrainTexts::First, 2);
  for (int batch = 0; batch < 20; ++batch) {
    BatchRows r = s.next();
    std::map<int64_t, int> count;
    for (int32_t row : r.image) ++count[d.image_labels[row]];
    int extra = 0;
    for (int64_t c : d.train_classes) {
      ASSERT_GE(count[c], 2);
      ASSERT_LE(count[c], 3);
      extra += count[c] - 2;
    }
    EXPECT_EQ(extra, 2);
  }
}

TEST(Sampler, ImageCursorAdvancesBeforeUseAndTheFirstTextIsUsed) {
  const Dataset d = tiny_dataset(3);
  BatchSampler s(d, 3, TrainTexts::First, 3);
  std::map<int64_t, std::vector<int32_t>> rows_of;
  for (size_t r = 0; r < d.image_labels.size(); ++r) rows_of[d.image_labels[r]].push_back(int32_t(r));
  std::map<int64_t, int32_t> first_text;
  for (size_t r = d.text_labels.size(); r-- > 0;) first_text[d.text_labels[r]] = int32_t(r);
  BatchRows r = s.next();  // first pass: classes 10, 20, 30 in order
  for (int i = 0; i < 3; ++i) {
    const int64_t c = d.train_classes[i];
    EXPECT_EQ(r.image[i], rows_of[c][1]) << "the first image used of a class is its second";
    EXPECT_EQ(r.text[i], first_text[c]);
  }
  // Class 10 has 2 images: its cursor wraps (1 -> 0).
  for (int b = 0; b < 5; ++b) {
    BatchRows n = s.next();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(d.text_labels[n.text[i]], d.image_labels[n.image[i]]);
  }
}

TEST(Sampler, WrongPairsAreTheBatchRolledByOneRow) {
  const Dataset d = tiny_dataset(9);
  BatchSampler s(d, 5, TrainTexts::All, 4);
  for (int b = 0; b < 10; ++b) {
    BatchRows r = s.next();
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(r.wrong_image[i], r.image[(i + 4) % 5]);
      EXPECT_EQ(r.wrong_text[i], r.text[(i + 4) % 5]);
    }
  }
}

TEST(Sampler, AllTextsModeDrawsEveryTextOfAClass) {
  const Dataset d = tiny_dataset(2);
  BatchSampler s(d, 2, TrainTexts::All, 5);
  std::map<int32_t, int> used;
  for (int b = 0; b < 50; ++b)
    for (int32_t t : s.next().text) ++used[t];
  EXPECT_EQ(used.size(), 4u);  // 2 classes x 2 texts
}

TEST(Sampler, RestoredStateContinuesTheSameSequence) {
  const Dataset d = tiny_dataset(6);
  BatchSampler a(d, 4, TrainTexts::All, 6);
  for (int i = 0; i < 7; ++i) a.next();
  const SamplerState saved = a.state();
  BatchSampler b(d, 4, TrainTexts::All, 999);
  b.restore(saved);
  for (int i = 0; i < 20; ++i) {
    BatchRows x = a.next(), y = b.next();
    ASSERT_EQ(x.image, y.image);
    ASSERT_EQ(x.text, y.text);
  }
  SamplerState bad = saved;
  bad.class_order.pop_back();
  EXPECT_THROW(b.restore(bad), Error);
}

}  // namespace
}  // namespace zscrgan
