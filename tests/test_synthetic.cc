// The embedded synthetic dataset: determinism, shapes, splits, and its difficulty measured
// with an independent baseline (ridge regression from texts to class-mean images).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "data/dataset.h"
#include "core/error.h"
#include "data/dataset_source.h"

namespace {

using zscrgan::Dataset;
using zscrgan::SyntheticSpec;

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Synthetic, SameSeedSameBytes) {
  const Dataset a = zscrgan::make_synthetic_dataset(SyntheticSpec{});
  const Dataset b = zscrgan::make_synthetic_dataset(SyntheticSpec{});
  EXPECT_TRUE(same_bytes(a.image_features.data, b.image_features.data));
  EXPECT_TRUE(same_bytes(a.text_features.data, b.text_features.data));
  EXPECT_EQ(a.image_labels, b.image_labels);
  EXPECT_EQ(a.text_labels, b.text_labels);
  EXPECT_EQ(a.train_classes, b.train_classes);
  EXPECT_EQ(a.test_classes, b.test_classes);
}

TEST(Synthetic, DifferentSeedDiffers) {
  SyntheticSpec s;
  const Dataset a = zscrgan::make_synthetic_dataset(s);
  s.seed = 8;
  const Dataset b = zscrgan::make_synthetic_dataset(s);
  EXPECT_FALSE(same_bytes(a.image_features.data, b.image_features.data));
  EXPECT_FALSE(same_bytes(a.text_features.data, b.text_features.data));
  EXPECT_NE(a.train_classes, b.train_classes);
}

// Guards the generator itself: a change to the model or the random streams changes every
// result computed from the default dataset, so it must be deliberate. (The tolerances leave
// room for last-bit differences between math libraries.)
TEST(Synthetic, DefaultSpecFingerprint) {
  const Dataset d = zscrgan::make_synthetic_dataset(SyntheticSpec{});
  double image_sum = 0, text_sum = 0;
  for (float v : d.image_features.data) image_sum += v;
  for (float v : d.text_features.data) text_sum += v;
  const std::vector<int64_t> first_train = {d.train_classes[0], d.train_classes[1],
                                            d.train_classes[2]};
  EXPECT_EQ(first_train, (std::vector<int64_t>{0, 3, 4}));
  EXPECT_NEAR(image_sum, 132628.3218, 0.2);
  EXPECT_NEAR(text_sum, 312.3649, 0.01);
  EXPECT_NEAR(d.text_features.data[0], 0.9239179, 1e-6);
}

TEST(Synthetic, ShapesLabelsAndSplits) {
  SyntheticSpec s;
  s.seen_classes = 7;
  s.unseen_classes = 5;
  s.images_per_class = 9;
  s.texts_per_class = 3;
  s.text_dim = 11;
  s.image_dim = 13;
  s.latent_dim = 4;
  const Dataset d = zscrgan::make_synthetic_dataset(s);
  EXPECT_EQ(d.name, "synthetic");
  EXPECT_EQ(d.image_features.rows, 12 * 9);
  EXPECT_EQ(d.image_features.cols, 13);
  EXPECT_EQ(d.image_features.data.size(), 12u * 9 * 13);
  EXPECT_EQ(d.text_features.rows, 12 * 3);
  EXPECT_EQ(d.text_features.cols, 11);
  EXPECT_EQ(d.text_features.data.size(), 12u * 3 * 11);
  EXPECT_EQ(d.image_labels.size(), 12u * 9);
  EXPECT_EQ(d.text_labels.size(), 12u * 3);
  EXPECT_EQ(d.train_classes.size(), 7u);
  EXPECT_EQ(d.test_classes.size(), 5u);
  std::set<int64_t> all(d.train_classes.begin(), d.train_classes.end());
  all.insert(d.test_classes.begin(), d.test_classes.end());
  EXPECT_EQ(all.size(), 12u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 11);
  EXPECT_TRUE(std::is_sorted(d.train_classes.begin(), d.train_classes.end()));
  for (int64_t c = 0; c < 12; ++c) {
    EXPECT_EQ(std::count(d.image_labels.begin(), d.image_labels.end(), c), 9);
    EXPECT_EQ(std::count(d.text_labels.begin(), d.text_labels.end(), c), 3);
  }
  EXPECT_NO_THROW(zscrgan::validate_dataset(d, "synthetic"));
}

TEST(Synthetic, ImagesAreNonNegativeAndNotDegenerate) {
  const Dataset d = zscrgan::make_synthetic_dataset(SyntheticSpec{});
  size_t zeros = 0;
  for (float v : d.image_features.data) {
    ASSERT_GE(v, 0.0f);
    ASSERT_TRUE(std::isfinite(v));
    zeros += v == 0.0f;
  }
  const double zero_fraction = static_cast<double>(zeros) / d.image_features.data.size();
  EXPECT_GT(zero_fraction, 0.2);
  EXPECT_LT(zero_fraction, 0.8);
  for (float v : d.text_features.data) ASSERT_TRUE(std::isfinite(v));
}

TEST(Synthetic, CountsDoNotReshuffleOtherParts) {
  SyntheticSpec s;
  const Dataset a = zscrgan::make_synthetic_dataset(s);
  s.images_per_class = 10;
  const Dataset b = zscrgan::make_synthetic_dataset(s);
  EXPECT_TRUE(same_bytes(a.text_features.data, b.text_features.data));
  EXPECT_EQ(a.train_classes, b.train_classes);
  // The first 10 images of class 0 are the same draws.
  EXPECT_EQ(std::memcmp(a.image_features.data.data(), b.image_features.data.data(),
                        10 * a.image_features.cols * sizeof(float)),
            0);
}

TEST(Synthetic, RejectsBadSpecs) {
  SyntheticSpec s;
  s.unseen_classes = 0;
  EXPECT_THROW(zscrgan::make_synthetic_dataset(s), zscrgan::Error);
  s = SyntheticSpec{};
  s.text_noise = -1;
  EXPECT_THROW(zscrgan::make_synthetic_dataset(s), zscrgan::Error);
  s = SyntheticSpec{};
  s.images_per_class = 1 << 20;
  s.image_dim = 1 << 12;
  EXPECT_THROW(zscrgan::make_synthetic_dataset(s), zscrgan::Error);
}

// ---- difficulty: an independent zero-shot baseline --------------------------------------

// Solves (X^T X + lambda I) W = X^T Y for W (p x q); X: n x p, Y: n x q, row-major.
std::vector<double> ridge(const std::vector<double>& X, const std::vector<double>& Y, int n,
                          int p, int q, double lambda) {
  std::vector<double> G(static_cast<size_t>(p) * p), R(static_cast<size_t>(p) * q);
  for (int i = 0; i < n; ++i)
    for (int a = 0; a < p; ++a) {
      for (int b = 0; b < p; ++b) G[a * p + b] += X[i * p + a] * X[i * p + b];
      for (int b = 0; b < q; ++b) R[a * q + b] += X[i * p + a] * Y[i * q + b];
    }
  for (int a = 0; a < p; ++a) G[a * p + a] += lambda;
  // G is symmetric positive definite: elimination without pivoting is stable.
  for (int c = 0; c < p; ++c)
    for (int r = c + 1; r < p; ++r) {
      const double f = G[r * p + c] / G[c * p + c];
      for (int k = c; k < p; ++k) G[r * p + k] -= f * G[c * p + k];
      for (int k = 0; k < q; ++k) R[r * q + k] -= f * R[c * q + k];
    }
  for (int c = p - 1; c >= 0; --c)
    for (int k = 0; k < q; ++k) {
      double s = R[c * q + k];
      for (int j = c + 1; j < p; ++j) s -= G[c * p + j] * R[j * q + k];
      R[c * q + k] = s / G[c * p + c];
    }
  return R;
}

// Unseen-class Precision@k of a ridge map from texts (with a bias column) to the mean image of
// their class, fit on the seen classes: every unseen text queries all unseen images by cosine
// similarity; precision is averaged per class, then over classes.
double ridge_baseline_precision(const Dataset& d, bool first_text_only, double lambda, int k) {
  const int Dt = static_cast<int>(d.text_features.cols);
  const int Di = static_cast<int>(d.image_features.cols);
  const std::set<int64_t> seen(d.train_classes.begin(), d.train_classes.end());
  std::map<int64_t, std::vector<double>> mean;
  std::map<int64_t, int> count;
  for (int64_t i = 0; i < d.image_features.rows; ++i) {
    auto& m = mean[d.image_labels[i]];
    m.resize(Di);
    for (int j = 0; j < Di; ++j) m[j] += d.image_features.row(i)[j];
    ++count[d.image_labels[i]];
  }
  for (auto& kv : mean)
    for (double& x : kv.second) x /= count[kv.first];

  std::vector<double> X, Y;
  std::set<int64_t> used;
  int n = 0;
  for (int64_t i = 0; i < d.text_features.rows; ++i) {
    const int64_t c = d.text_labels[i];
    if (!seen.count(c) || (first_text_only && used.count(c))) continue;
    used.insert(c);
    for (int j = 0; j < Dt; ++j) X.push_back(d.text_features.row(i)[j]);
    X.push_back(1.0);
    Y.insert(Y.end(), mean[c].begin(), mean[c].end());
    ++n;
  }
  const std::vector<double> W = ridge(X, Y, n, Dt + 1, Di, lambda);

  std::vector<int64_t> gallery;
  for (int64_t i = 0; i < d.image_features.rows; ++i)
    if (!seen.count(d.image_labels[i])) gallery.push_back(i);
  std::map<int64_t, double> precision_sum;
  std::map<int64_t, int> queries;
  std::vector<double> y(Di);
  std::vector<std::pair<double, int64_t>> scored;
  for (int64_t i = 0; i < d.text_features.rows; ++i) {
    const int64_t c = d.text_labels[i];
    if (seen.count(c)) continue;
    std::fill(y.begin(), y.end(), 0.0);
    for (int a = 0; a <= Dt; ++a) {
      const double x = a < Dt ? d.text_features.row(i)[a] : 1.0;
      for (int j = 0; j < Di; ++j) y[j] += x * W[a * Di + j];
    }
    double yn = 0;
    for (double v : y) yn += v * v;
    scored.clear();
    for (int64_t g : gallery) {
      const float* v = d.image_features.row(g);
      double dot = 0, vn = 0;
      for (int j = 0; j < Di; ++j) {
        dot += y[j] * v[j];
        vn += static_cast<double>(v[j]) * v[j];
      }
      scored.push_back({-dot / (std::sqrt(yn * vn) + 1e-30), d.image_labels[g]});
    }
    std::partial_sort(scored.begin(), scored.begin() + k, scored.end());
    int hits = 0;
    for (int r = 0; r < k; ++r) hits += scored[r].second == c;
    precision_sum[c] += static_cast<double>(hits) / k;
    ++queries[c];
  }
  double total = 0;
  for (const auto& kv : precision_sum) total += kv.second / queries[kv.first];
  return total / precision_sum.size();
}

// Chance is 1 / 20 unseen classes = 0.05. The default dataset must leave a linear baseline
// well above chance and well below 1.0, so that training has something to show and room to
// differ. The measured values are listed in datasets/README.md.
TEST(Synthetic, DefaultIsHardButLearnable) {
  const Dataset d = zscrgan::make_synthetic_dataset(SyntheticSpec{});
  const double first = ridge_baseline_precision(d, /*first_text_only=*/true, 10.0, 50);
  const double all = ridge_baseline_precision(d, /*first_text_only=*/false, 10.0, 50);
  std::printf("ridge baseline P@50 on unseen classes: first text %.3f, all texts %.3f\n", first,
              all);
  EXPECT_GT(first, 0.35);
  EXPECT_LT(first, 0.75);
  EXPECT_GT(all, 0.35);
  EXPECT_LT(all, 0.75);
}

}  // namespace
