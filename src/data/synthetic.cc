// The embedded synthetic dataset (model described in datasets/README.md).
//
// Every class c has a shared latent z_c ~ N(0, I_latent), seen by its texts and its images,
// and a private latent w_c ~ N(0, I_latent) that only its images show. Texts see z_c
// linearly, images through a non-linear, non-negative view:
//   text  t = A z_c + text_noise * n                            A:  text_dim x latent_dim
//   image v = relu(B2 tanh(B1 z_c + C1 w_c + image_noise * n'))  B1, C1: hidden x latent_dim
//                                                                B2: image_dim x hidden
// with hidden = 2 latent_dim. Because part of every class's look cannot be predicted from its
// texts, even a perfect text->image mapping ranks some other class's images first: unseen-class
// retrieval stays well below 1.0, and well above chance for a mapping that learns the shared
// structure from the seen classes.
//
// Randomness: std::mt19937_64 (its output sequence is fixed by the standard) driving a
// Box-Muller transform written here, because std::normal_distribution differs between standard
// libraries. Each part (weights, split, latents, each class's texts and images) draws from its
// own stream, derived from the seed, so changing images_per_class, say, leaves the texts, the
// split and each class's first images as they were.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "data/dataset_source.h"
#include "core/error.h"
#include "core/splitmix64.h"

namespace zscrgan {

namespace {

// Hidden width of the image view, per latent dimension.
constexpr int kHiddenPerLatent = 2;

// Independent stream `tag` (and optional index) of a seed.
uint64_t stream_seed(uint64_t seed, uint64_t tag, uint64_t index = 0) {
  return splitmix64(splitmix64(splitmix64(seed) ^ tag) ^ index);
}

class Normal {
 public:
  explicit Normal(uint64_t seed) : engine_(seed) {}
  // Uniform in (0, 1]: 53 random bits, never 0 so the log below is finite.
  double uniform() { return (static_cast<double>(engine_() >> 11) + 1.0) * 0x1.0p-53; }
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double theta = 2.0 * 3.14159265358979323846 * uniform();
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }
  uint64_t bits() { return engine_(); }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// rows x cols, entries N(0, scale^2).
std::vector<double> gaussian_matrix(Normal& g, int rows, int cols, double scale) {
  std::vector<double> m(static_cast<size_t>(rows) * cols);
  for (double& x : m) x = scale * g.next();
  return m;
}

// y = M x, M: rows x cols.
void matvec(const std::vector<double>& m, int rows, int cols, const double* x, double* y) {
  for (int r = 0; r < rows; ++r) {
    double s = 0;
    const double* mr = m.data() + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) s += mr[c] * x[c];
    y[r] = s;
  }
}

void check_spec(const SyntheticSpec& s) {
  auto positive = [](const char* key, int v) {
    if (v <= 0) fail("synthetic dataset: ", key, " must be > 0, got ", v);
  };
  positive("seen_classes", s.seen_classes);
  positive("unseen_classes", s.unseen_classes);
  positive("images_per_class", s.images_per_class);
  positive("texts_per_class", s.texts_per_class);
  positive("text_dim", s.text_dim);
  positive("image_dim", s.image_dim);
  positive("latent_dim", s.latent_dim);
  if (!(s.text_noise >= 0) || !std::isfinite(s.text_noise))
    fail("synthetic dataset: text_noise must be a finite number >= 0, got ", s.text_noise);
  if (!(s.image_noise >= 0) || !std::isfinite(s.image_noise))
    fail("synthetic dataset: image_noise must be a finite number >= 0, got ", s.image_noise);
  // Keep every buffer well inside what one host vector (and an int index) can hold.
  const double classes = static_cast<double>(s.seen_classes) + s.unseen_classes;
  const double image_values = classes * s.images_per_class * s.image_dim;
  const double text_values = classes * s.texts_per_class * s.text_dim;
  const double limit = static_cast<double>(std::numeric_limits<int32_t>::max());
  if (image_values > limit || text_values > limit || classes > limit)
    fail("synthetic dataset: too large (", image_values, " image values, ", text_values,
         " text values; at most ", limit, " each)");
}

}  // namespace

Dataset make_synthetic_dataset(const SyntheticSpec& spec) {
  check_spec(spec);
  const int n_classes = spec.seen_classes + spec.unseen_classes;
  const int L = spec.latent_dim;
  const int H = kHiddenPerLatent * L;  // hidden width of the image view
  const int Dt = spec.text_dim;
  const int Di = spec.image_dim;

  // Fixed views. Scales keep each coordinate of A z, B1 z, C1 w, B2 h near unit variance.
  Normal weights(stream_seed(spec.seed, 1));
  const std::vector<double> A = gaussian_matrix(weights, Dt, L, 1.0 / std::sqrt(L));
  const std::vector<double> B1 = gaussian_matrix(weights, H, L, 1.0 / std::sqrt(L));
  const std::vector<double> B2 = gaussian_matrix(weights, Di, H, 1.0 / std::sqrt(H));
  const std::vector<double> C1 = gaussian_matrix(weights, H, L, 1.0 / std::sqrt(L));

  // Which class ids are seen: a Fisher-Yates shuffle written out (std::shuffle's use of the
  // engine is implementation-defined).
  std::vector<int64_t> ids(static_cast<size_t>(n_classes));
  for (int c = 0; c < n_classes; ++c) ids[c] = c;
  Normal split(stream_seed(spec.seed, 2));
  for (int i = n_classes - 1; i > 0; --i) {
    const int j = static_cast<int>(split.bits() % static_cast<uint64_t>(i + 1));
    std::swap(ids[i], ids[j]);
  }
  Dataset d;
  d.name = "synthetic";
  d.train_classes.assign(ids.begin(), ids.begin() + spec.seen_classes);
  d.test_classes.assign(ids.begin() + spec.seen_classes, ids.end());
  std::sort(d.train_classes.begin(), d.train_classes.end());
  std::sort(d.test_classes.begin(), d.test_classes.end());

  Normal latents(stream_seed(spec.seed, 3));
  std::vector<double> z(static_cast<size_t>(n_classes) * L);
  for (double& x : z) x = latents.next();
  // The image-only part of each class: visible in its images, invisible to its texts.
  Normal private_latents(stream_seed(spec.seed, 6));
  std::vector<double> w(static_cast<size_t>(n_classes) * L);
  for (double& x : w) x = private_latents.next();

  d.text_features.rows = static_cast<int64_t>(n_classes) * spec.texts_per_class;
  d.text_features.cols = Dt;
  d.text_features.data.resize(static_cast<size_t>(d.text_features.rows) * Dt);
  d.image_features.rows = static_cast<int64_t>(n_classes) * spec.images_per_class;
  d.image_features.cols = Di;
  d.image_features.data.resize(static_cast<size_t>(d.image_features.rows) * Di);

  std::vector<double> t(Dt), pre(H), pre_private(H), h(H), v(Di);
  for (int c = 0; c < n_classes; ++c) {
    const double* zc = z.data() + static_cast<size_t>(c) * L;

    Normal text_noise(stream_seed(spec.seed, 4, static_cast<uint64_t>(c)));
    matvec(A, Dt, L, zc, t.data());
    for (int k = 0; k < spec.texts_per_class; ++k) {
      const int64_t row = static_cast<int64_t>(c) * spec.texts_per_class + k;
      float* out = d.text_features.row(row);
      for (int i = 0; i < Dt; ++i)
        out[i] = static_cast<float>(t[i] + spec.text_noise * text_noise.next());
      d.text_labels.push_back(c);
    }

    Normal image_noise(stream_seed(spec.seed, 5, static_cast<uint64_t>(c)));
    matvec(B1, H, L, zc, pre.data());
    matvec(C1, H, L, w.data() + static_cast<size_t>(c) * L, pre_private.data());
    for (int i = 0; i < H; ++i) pre[i] += pre_private[i];
    for (int k = 0; k < spec.images_per_class; ++k) {
      for (int i = 0; i < H; ++i) h[i] = std::tanh(pre[i] + spec.image_noise * image_noise.next());
      matvec(B2, Di, H, h.data(), v.data());
      const int64_t row = static_cast<int64_t>(c) * spec.images_per_class + k;
      float* out = d.image_features.row(row);
      for (int i = 0; i < Di; ++i) out[i] = static_cast<float>(std::max(0.0, v[i]));
      d.image_labels.push_back(c);
    }
  }
  return d;
}

}  // namespace zscrgan
