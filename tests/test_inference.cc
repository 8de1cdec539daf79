// Inference with a saved checkpoint: embed and retrieve checked against an independent
// double-precision reference of the networks (the same weights and the same Philox noise),
// streaming across chunk boundaries (chunks that do not divide the gallery, a last chunk
// shorter than k, exact ties split by a boundary), determinism, the averaging of samples, and
// bad inputs failing with one line that names the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "backend/backend.h"
#include "train/checkpoint.h"
#include "backend/elementwise.h"
#include "model/encoder.h"
#include "infer/inference.h"
#include "formats/npy.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

namespace fs = std::filesystem;
using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

// A dense layer's parameters in double, w (in, out) row-major.
struct RefLayer {
  int in = 0, out = 0;
  std::vector<double> w, b;
};

// A small model saved as a checkpoint, with a host copy of its parameters.
struct SavedModel {
  ScopedTempDir dir;
  std::string checkpoint;
  ModelDims dims;
  int64_t rounds = 0;  // the checkpoint's rounds, which key the query noise with the seed
  RefLayer condition, gen1, gen2, gen3, csem;
};

RefLayer copy_layer(const Linear& l) {
  RefLayer r;
  r.in = l.w.value.rows;
  r.out = l.w.value.cols;
  r.w.assign(l.w.value.data, l.w.value.data + l.w.value.numel());
  r.b.assign(l.b.value.data, l.b.value.data + l.b.value.numel());
  return r;
}

// Builds a trainer on a small synthetic dataset, gives the model unit-scale weights (so that
// every layer's output is O(1) and the comparisons below are not dominated by tiny values),
// and saves it through the checkpoint writer.
std::unique_ptr<SavedModel> make_saved_model() {
  auto m = std::make_unique<SavedModel>();
  Config cfg;
  cfg.gf_dim = 24;
  cfg.df_dim = 8;
  cfg.embed_dim = 6;
  cfg.z_dim = 5;
  cfg.batch_size = 4;
  cfg.e_step_iters = 1;
  cfg.m_step_iters = 1;
  cfg.n_critic = 1;
  cfg.top_k = 5;
  cfg.synthetic.seen_classes = 4;
  cfg.synthetic.unseen_classes = 3;
  cfg.synthetic.images_per_class = 6;
  cfg.synthetic.texts_per_class = 2;
  cfg.synthetic.text_dim = 7;
  cfg.synthetic.image_dim = 9;
  cfg.output_dir = m->dir.file("run");
  const Dataset data = make_synthetic_dataset(cfg.synthetic);
  auto be = make_cpu_backend();
  Trainer trainer(cfg, data, *be);
  // One round, so that the checkpoint's round count (which keys the query noise) is not 0.
  trainer.train_round();
  m->rounds = trainer.rounds_done();
  Model& model = trainer.model();
  std::mt19937 rng(2024);
  for (Linear* l : {&model.condition, &model.gen1, &model.gen2, &model.gen3, &model.critic1,
                    &model.critic2, &model.csem}) {
    std::normal_distribution<float> w(0.f, 1.f / std::sqrt(float(l->w.value.rows)));
    std::normal_distribution<float> b(0.f, 0.1f);
    for (size_t i = 0; i < l->w.value.numel(); ++i) l->w.value.data[i] = w(rng);
    for (size_t i = 0; i < l->b.value.numel(); ++i) l->b.value.data[i] = b(rng);
  }
  m->checkpoint = m->dir.file("model.safetensors");
  save_checkpoint(trainer, RunState{}, m->checkpoint);
  m->dims = model.dims();
  m->condition = copy_layer(model.condition);
  m->gen1 = copy_layer(model.gen1);
  m->gen2 = copy_layer(model.gen2);
  m->gen3 = copy_layer(model.gen3);
  m->csem = copy_layer(model.csem);
  return m;
}

double act(double x, Act a) {
  if (a == Act::LeakyRelu) return x > 0 ? x : 0.2 * x;
  if (a == Act::Relu) return x > 0 ? x : 0;
  return x;
}

std::vector<double> dense(const std::vector<double>& x, const RefLayer& l, Act a) {
  std::vector<double> y(l.b);
  for (int i = 0; i < l.in; ++i)
    for (int o = 0; o < l.out; ++o) y[o] += x[i] * l.w[size_t(i) * l.out + o];
  for (double& v : y) v = act(v, a);
  return y;
}

// The query of text row `row` for one noise sample, in double.
std::vector<double> ref_query_sample(const SavedModel& m, const std::vector<float>& text, int64_t row,
                                     int sample, uint64_t seed) {
  const int e = m.dims.embed_dim, zd = m.dims.z_dim;
  const int64_t block = row / kQueryBlockRows, in_block = row % kQueryBlockRows;
  const uint64_t key = query_noise_key(seed, m.rounds);
  const NoiseStream eps_stream = query_noise(key, block, sample, 0);
  const NoiseStream z_stream = query_noise(key, block, sample, 1);
  std::vector<double> t(text.begin(), text.end());
  const std::vector<double> h = dense(t, m.condition, Act::LeakyRelu);
  std::vector<double> cz(e + zd);
  for (int j = 0; j < e; ++j)
    cz[j] = h[j] + std::exp(h[e + j]) *
                       double(philox_truncated_normal(eps_stream, uint64_t(in_block) * e + j));
  for (int j = 0; j < zd; ++j)
    cz[e + j] = double(philox_normal(z_stream, uint64_t(in_block) * zd + j));
  const auto h1 = dense(cz, m.gen1, Act::LeakyRelu);
  const auto h2 = dense(h1, m.gen2, Act::LeakyRelu);
  const auto x = dense(h2, m.gen3, Act::Relu);
  return dense(x, m.csem, Act::LeakyRelu);
}

std::vector<double> ref_query(const SavedModel& m, const HostMatrix& texts, int64_t row,
                              int samples, uint64_t seed) {
  std::vector<double> mean(m.dims.embed_dim, 0.0);
  const std::vector<float> t(texts.row(row), texts.row(row) + texts.cols);
  for (int s = 0; s < samples; ++s) {
    const auto q = ref_query_sample(m, t, row, s, seed);
    for (size_t j = 0; j < q.size(); ++j) mean[j] += q[j] / samples;
  }
  return mean;
}

std::vector<double> ref_image(const SavedModel& m, const HostMatrix& images, int64_t row) {
  return dense(std::vector<double>(images.row(row), images.row(row) + images.cols), m.csem,
               Act::LeakyRelu);
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(std::max(aa, 1e-12)) / std::sqrt(std::max(bb, 1e-12));
}

HostMatrix random_matrix(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.f) {
  HostMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.data.resize(size_t(rows * cols));
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, scale);
  for (float& v : m.data) v = n(rng);
  return m;
}

// |a - b| <= abs + rel * scale, with scale the row's largest reference magnitude.
void expect_rows_close(const float* got, const std::vector<double>& want, double rel,
                       const std::string& where) {
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t j = 0; j < want.size(); ++j)
    ASSERT_NEAR(got[j], want[j], 1e-6 + rel * scale) << where << ", column " << j;
}

struct Retrieved {
  int top_k = 0;
  int64_t gallery_rows = 0;
  std::vector<std::vector<int64_t>> indices;
  std::vector<std::vector<double>> scores;
};

Retrieved read_retrieved(const std::string& path) {
  const nlohmann::json j = nlohmann::json::parse(zscrgan_test::read_bytes(path));
  Retrieved r;
  r.top_k = j.at("top_k").get<int>();
  r.gallery_rows = j.at("gallery_rows").get<int64_t>();
  const auto& qs = j.at("queries");
  for (size_t q = 0; q < qs.size(); ++q) {
    EXPECT_EQ(qs[q].at("query").get<size_t>(), q);
    r.indices.push_back(qs[q].at("indices").get<std::vector<int64_t>>());
    r.scores.push_back(qs[q].at("scores").get<std::vector<double>>());
  }
  return r;
}

// The reference ranking: every gallery row's cosine in double, fully sorted (best first, ties
// to the lower row).
struct Ranking {
  std::vector<int64_t> index;
  std::vector<double> score;  // by gallery row, not by rank
};
Ranking rank(const std::vector<double>& query, const std::vector<std::vector<double>>& gallery) {
  Ranking r;
  r.score.resize(gallery.size());
  for (size_t g = 0; g < gallery.size(); ++g) r.score[g] = cosine(query, gallery[g]);
  r.index.resize(gallery.size());
  std::iota(r.index.begin(), r.index.end(), 0);
  std::sort(r.index.begin(), r.index.end(), [&](int64_t a, int64_t b) {
    return r.score[a] > r.score[b] || (r.score[a] == r.score[b] && a < b);
  });
  return r;
}

// Checks a retrieval against the brute-force reference: every returned row is as similar as the
// reference's row at that rank (within float rounding), its score is right, rows are distinct,
// and the row itself must match wherever the reference has no near tie at that rank.
void expect_matches_reference(const Retrieved& got, const std::vector<Ranking>& ref, int k) {
  constexpr double kTol = 2e-5;
  ASSERT_EQ(got.indices.size(), ref.size());
  for (size_t q = 0; q < ref.size(); ++q) {
    ASSERT_EQ(got.indices[q].size(), size_t(k)) << "query " << q;
    ASSERT_EQ(got.scores[q].size(), size_t(k)) << "query " << q;
    std::vector<int64_t> seen;
    for (int j = 0; j < k; ++j) {
      const int64_t idx = got.indices[q][j];
      ASSERT_GE(idx, 0);
      ASSERT_LT(idx, int64_t(ref[q].score.size()));
      const double want = ref[q].score[ref[q].index[j]];
      EXPECT_NEAR(ref[q].score[idx], want, kTol) << "query " << q << " rank " << j;
      EXPECT_NEAR(got.scores[q][j], want, kTol) << "query " << q << " rank " << j;
      if (j > 0) EXPECT_GE(got.scores[q][j - 1], got.scores[q][j]) << "query " << q;
      const bool tie_before = j > 0 && ref[q].score[ref[q].index[j - 1]] - want <= kTol;
      const bool tie_after = j + 1 < int(ref[q].index.size()) &&
                             want - ref[q].score[ref[q].index[j + 1]] <= kTol;
      if (!tie_before && !tie_after) EXPECT_EQ(idx, ref[q].index[j]) << "query " << q << " rank " << j;
      seen.push_back(idx);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "query " << q;
  }
}

class Inference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = make_saved_model().release(); }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  const SavedModel& model() const { return *model_; }
  ScopedTempDir dir_;
  std::ostringstream log_;
  static SavedModel* model_;
};
SavedModel* Inference::model_ = nullptr;

// The first n retrieved of query q are distinct copies of the tied row: their scores agree
// within float rounding (the copies may sit in chunks of other shapes, and no BLAS promises
// the same rounding there), and bitwise-equal scores come in row order.
void expect_tied_copies_first(const Retrieved& r, size_t q, const std::vector<int64_t>& tie_rows,
                              size_t n) {
  ASSERT_GE(r.indices[q].size(), n);
  std::vector<int64_t> got(r.indices[q].begin(), r.indices[q].begin() + n);
  for (size_t j = 0; j < n; ++j) {
    EXPECT_NE(std::find(tie_rows.begin(), tie_rows.end(), got[j]), tie_rows.end())
        << "rank " << j << " holds row " << got[j] << ", not a copy of the tied row";
    EXPECT_NEAR(r.scores[q][j], r.scores[q][0], 1e-6) << "rank " << j;
    if (j > 0 && r.scores[q][j] == r.scores[q][j - 1])
      EXPECT_LT(got[j - 1], got[j]) << "equal scores out of row order at rank " << j;
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a row repeats";
}

// A gallery in which several rows are exact copies of query 0's best row: two straddle the
// boundary between chunks 2 and 3 (rows 29 | 30 with chunk_rows 10), two the boundary before
// the short last chunk (99 | 100).
struct TieGallery {
  HostMatrix images;
  std::vector<int64_t> tie_rows;  // every copy, the original included, ascending
};
TieGallery make_tie_gallery(const SavedModel& m, const HostMatrix& texts, uint64_t seed, int samples) {
  TieGallery t;
  t.images = random_matrix(103, m.dims.image_dim, 77);
  std::vector<std::vector<double>> g;
  for (int64_t r = 0; r < t.images.rows; ++r) g.push_back(ref_image(m, t.images, r));
  const int64_t best = rank(ref_query(m, texts, 0, samples, seed), g).index[0];
  t.tie_rows = {best};
  for (int64_t r : {29, 30, 99, 100}) {
    if (r == best) continue;
    std::copy(t.images.row(best), t.images.row(best) + t.images.cols, t.images.row(r));
    t.tie_rows.push_back(r);
  }
  std::sort(t.tie_rows.begin(), t.tie_rows.end());
  return t;
}

TEST_F(Inference, RetrieveMatchesBruteForceAcrossChunkBoundaries) {
  const SavedModel& m = model();
  const uint64_t seed = 5;
  const HostMatrix texts = random_matrix(9, m.dims.text_dim, 11);
  const TieGallery tg = make_tie_gallery(m, texts, seed, 1);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("gallery.npy"), tg.images);

  std::vector<std::vector<double>> g;
  for (int64_t r = 0; r < tg.images.rows; ++r) g.push_back(ref_image(m, tg.images, r));
  std::vector<Ranking> ref;
  for (int64_t q = 0; q < texts.rows; ++q) ref.push_back(rank(ref_query(m, texts, q, 1, seed), g));

  // 10 does not divide 103 and leaves a last chunk of 3 rows, fewer than k = 7; 1 makes every
  // row its own chunk; 1000 is one chunk for everything.
  for (int64_t chunk : {int64_t(10), int64_t(1), int64_t(1000)}) {
    SCOPED_TRACE("chunk_rows " + std::to_string(chunk));
    RetrieveOptions o;
    o.checkpoint = m.checkpoint;
    o.texts = dir_.file("texts.npy");
    o.gallery = dir_.file("gallery.npy");
    o.out = dir_.file("R" + std::to_string(chunk) + ".json");
    o.top_k = 7;
    o.seed = seed;
    o.device = "cpu";
    o.chunk_rows = chunk;
    run_retrieve(o, log_);
    const Retrieved r = read_retrieved(o.out);
    EXPECT_EQ(r.top_k, 7);
    EXPECT_EQ(r.gallery_rows, 103);
    expect_matches_reference(r, ref, 7);
    // The copies come first, whichever chunks they fell in. (Every chunking is held against
    // the same brute force above, so they agree with each other up to near-ties.)
    expect_tied_copies_first(r, 0, tg.tie_rows, tg.tie_rows.size());
  }
}

TEST_F(Inference, TiesLargerThanKReturnOnlyCopiesInRowOrder) {
  const SavedModel& m = model();
  const HostMatrix texts = random_matrix(3, m.dims.text_dim, 12);
  const TieGallery tg = make_tie_gallery(m, texts, 0, 1);
  ASSERT_GE(tg.tie_rows.size(), 4u);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("gallery.npy"), tg.images);
  RetrieveOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir_.file("texts.npy");
  o.gallery = dir_.file("gallery.npy");
  o.out = dir_.file("R.json");
  o.top_k = 3;
  o.device = "cpu";
  o.chunk_rows = 10;
  run_retrieve(o, log_);
  const Retrieved r = read_retrieved(o.out);
  expect_tied_copies_first(r, 0, tg.tie_rows, 3);
}

TEST_F(Inference, RetrieveWithSamplesUsesTheMeanQuery) {
  const SavedModel& m = model();
  const uint64_t seed = 9;
  const HostMatrix texts = random_matrix(6, m.dims.text_dim, 13);
  const HostMatrix images = random_matrix(40, m.dims.image_dim, 14);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("gallery.npy"), images);
  std::vector<std::vector<double>> g;
  for (int64_t r = 0; r < images.rows; ++r) g.push_back(ref_image(m, images, r));
  std::vector<Ranking> ref;
  for (int64_t q = 0; q < texts.rows; ++q) ref.push_back(rank(ref_query(m, texts, q, 4, seed), g));
  RetrieveOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir_.file("texts.npy");
  o.gallery = dir_.file("gallery.npy");
  o.out = dir_.file("R.json");
  o.top_k = 10;
  o.samples = 4;
  o.seed = seed;
  o.device = "cpu";
  o.chunk_rows = 16;
  run_retrieve(o, log_);
  expect_matches_reference(read_retrieved(o.out), ref, 10);
}

EmbedOptions embed_options(const SavedModel& m, const ScopedTempDir& dir, const std::string& out) {
  EmbedOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir.file("texts.npy");
  o.images = dir.file("images.npy");
  o.out_dir = dir.file(out);
  o.device = "cpu";
  return o;
}

TEST_F(Inference, EmbedShapesValuesAndDeterminism) {
  const SavedModel& m = model();
  // Two query blocks (4096 + 37 rows); images in chunks of 16 that do not divide 50.
  const HostMatrix texts = random_matrix(kQueryBlockRows + 37, m.dims.text_dim, 21);
  const HostMatrix images = random_matrix(50, m.dims.image_dim, 22);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("images.npy"), images);
  EmbedOptions o = embed_options(m, dir_, "a");
  o.seed = 3;
  o.chunk_rows = 16;
  run_embed(o, log_);
  EXPECT_EQ(log_.str().find("grew"), std::string::npos) << log_.str();
  const HostMatrix t = read_npy_matrix(dir_.file("a/text_embeddings.npy"));
  const HostMatrix i = read_npy_matrix(dir_.file("a/image_embeddings.npy"));
  EXPECT_EQ(t.rows, texts.rows);
  EXPECT_EQ(t.cols, m.dims.embed_dim);
  EXPECT_EQ(i.rows, images.rows);
  EXPECT_EQ(i.cols, m.dims.embed_dim);
  for (int64_t r : {int64_t(0), int64_t(1), int64_t(kQueryBlockRows - 1), int64_t(kQueryBlockRows),
                    texts.rows - 1})
    expect_rows_close(t.row(r), ref_query(m, texts, r, 1, 3), 1e-4, "text row " + std::to_string(r));
  for (int64_t r = 0; r < images.rows; ++r)
    expect_rows_close(i.row(r), ref_image(m, images, r), 1e-5, "image row " + std::to_string(r));

  // The same seed draws the same queries whatever the chunk size of the images, and another
  // seed other queries; images carry no noise. (Within float rounding: another chunking, or
  // buffers at other addresses, may make the GEMM take other kernels; no BLAS promises
  // bitwise equality across them.)
  auto expect_close = [&](const HostMatrix& got, const HostMatrix& want, const std::string& what) {
    ASSERT_EQ(got.rows, want.rows) << what;
    for (int64_t r = 0; r < want.rows; ++r)
      expect_rows_close(got.row(r), std::vector<double>(want.row(r), want.row(r) + want.cols), 1e-5,
                        what + " row " + std::to_string(r));
  };
  o.out_dir = dir_.file("b");
  o.chunk_rows = 7;
  run_embed(o, log_);
  expect_close(read_npy_matrix(dir_.file("b/text_embeddings.npy")), t, "text, images in chunks of 7,");
  expect_close(read_npy_matrix(dir_.file("b/image_embeddings.npy")), i, "image in chunks of 7,");

  o.out_dir = dir_.file("c");
  o.seed = 4;
  o.chunk_rows = 16;
  run_embed(o, log_);
  const HostMatrix t4 = read_npy_matrix(dir_.file("c/text_embeddings.npy"));
  size_t far = 0;  // elements that differ by more than rounding
  for (size_t k = 0; k < t.data.size(); ++k) far += std::fabs(t4.data[k] - t.data[k]) > 1e-3;
  EXPECT_GT(far, t.data.size() / 2) << "seed 4 drew nearly the same queries as seed 3";
  expect_close(read_npy_matrix(dir_.file("c/image_embeddings.npy")), i, "image with seed 4,");

  // Replacing an earlier output folder works; no temporary folder is left behind.
  run_embed(o, log_);
  for (const auto& e : fs::directory_iterator(dir_.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(Inference, EmbedTextsOrImagesAlone) {
  const SavedModel& m = model();
  write_npy_matrix(dir_.file("texts.npy"), random_matrix(5, m.dims.text_dim, 31));
  write_npy_matrix(dir_.file("images.npy"), random_matrix(4, m.dims.image_dim, 32));
  EmbedOptions o = embed_options(m, dir_, "texts_only");
  o.images.clear();
  run_embed(o, log_);
  EXPECT_TRUE(fs::exists(dir_.file("texts_only/text_embeddings.npy")));
  EXPECT_FALSE(fs::exists(dir_.file("texts_only/image_embeddings.npy")));
  o = embed_options(m, dir_, "images_only");
  o.texts.clear();
  run_embed(o, log_);
  EXPECT_FALSE(fs::exists(dir_.file("images_only/text_embeddings.npy")));
  EXPECT_EQ(read_npy_matrix(dir_.file("images_only/image_embeddings.npy")).rows, 4);
}

TEST_F(Inference, SamplesAverageSingleDraws) {
  const SavedModel& m = model();
  const HostMatrix texts = random_matrix(kQueryBlockRows + 5, m.dims.text_dim, 41);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  EmbedOptions o = embed_options(m, dir_, "s1");
  o.images.clear();
  o.seed = 17;
  run_embed(o, log_);
  o.samples = 3;
  o.out_dir = dir_.file("s3");
  run_embed(o, log_);
  // Memory was sized once, up front: the activations of a full query block fit the scratch.
  EXPECT_EQ(log_.str().find("grew"), std::string::npos) << log_.str();
  const HostMatrix one = read_npy_matrix(dir_.file("s1/text_embeddings.npy"));
  const HostMatrix three = read_npy_matrix(dir_.file("s3/text_embeddings.npy"));
  for (int64_t r : {int64_t(0), int64_t(2), int64_t(kQueryBlockRows + 4)}) {
    const std::vector<float> t(texts.row(r), texts.row(r) + texts.cols);
    std::vector<std::vector<double>> draws;
    std::vector<double> mean(m.dims.embed_dim, 0.0);
    for (int s = 0; s < 3; ++s) {
      draws.push_back(ref_query_sample(m, t, r, s, 17));
      for (int j = 0; j < m.dims.embed_dim; ++j) mean[j] += draws.back()[j] / 3;
    }
    const std::string where = "text row " + std::to_string(r);
    // One sample is draw 0; three samples are the mean of draws 0, 1 and 2.
    expect_rows_close(one.row(r), draws[0], 1e-4, where + ", 1 sample");
    expect_rows_close(three.row(r), mean, 1e-4, where + ", 3 samples");
    // The draws differ, so the mean is not just draw 0.
    double diff = 0;
    for (int j = 0; j < m.dims.embed_dim; ++j) diff = std::max(diff, std::fabs(draws[1][j] - draws[0][j]));
    EXPECT_GT(diff, 1e-3) << where;
  }
}

// embed and retrieve read and verify the checkpoint once, although each needs its config (to
// reject a file that is not a checkpoint), its dimensions and its parameters.
TEST_F(Inference, EmbedAndRetrieveReadTheCheckpointOnce) {
  const SavedModel& m = model();
  write_npy_matrix(dir_.file("texts.npy"), random_matrix(3, m.dims.text_dim, 61));
  write_npy_matrix(dir_.file("images.npy"), random_matrix(5, m.dims.image_dim, 62));
  uint64_t reads = checkpoint_files_read();
  run_embed(embed_options(m, dir_, "once"), log_);
  EXPECT_EQ(checkpoint_files_read() - reads, 1u) << "embed";
  RetrieveOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir_.file("texts.npy");
  o.gallery = dir_.file("images.npy");
  o.out = dir_.file("R.json");
  o.top_k = 2;
  o.device = "cpu";
  reads = checkpoint_files_read();
  run_retrieve(o, log_);
  EXPECT_EQ(checkpoint_files_read() - reads, 1u) << "retrieve";
}

TEST_F(Inference, RetrieveUsesTheQueriesEmbedWrites) {
  const SavedModel& m = model();
  const HostMatrix texts = random_matrix(4, m.dims.text_dim, 51);
  const HostMatrix images = random_matrix(12, m.dims.image_dim, 52);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("images.npy"), images);
  EmbedOptions e = embed_options(m, dir_, "emb");
  e.samples = 2;
  e.seed = 8;
  run_embed(e, log_);
  RetrieveOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir_.file("texts.npy");
  o.gallery = dir_.file("images.npy");
  o.out = dir_.file("R.json");
  o.top_k = 12;
  o.samples = 2;
  o.seed = 8;
  o.device = "cpu";
  run_retrieve(o, log_);
  const HostMatrix q = read_npy_matrix(dir_.file("emb/text_embeddings.npy"));
  const HostMatrix g = read_npy_matrix(dir_.file("emb/image_embeddings.npy"));
  const Retrieved r = read_retrieved(o.out);
  for (int64_t i = 0; i < q.rows; ++i)
    for (int j = 0; j < 12; ++j) {
      const int64_t idx = r.indices[i][j];
      const std::vector<double> a(q.row(i), q.row(i) + q.cols), b(g.row(idx), g.row(idx) + g.cols);
      EXPECT_NEAR(r.scores[i][j], cosine(a, b), 1e-5);
    }
}

// The same runs on the GPU: same noise (Philox on both), same results within float rounding.
// Exact ties are not asserted to come out in row order here: cuBLAS may pick another kernel
// (another summation order) for a chunk of another shape.
TEST_F(Inference, CudaMatchesTheReference) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device, test skipped: " << reason;
  const SavedModel& m = model();
  const uint64_t seed = 21;
  const HostMatrix texts = random_matrix(kQueryBlockRows + 3, m.dims.text_dim, 71);
  const TieGallery tg = make_tie_gallery(m, texts, seed, 2);
  write_npy_matrix(dir_.file("texts.npy"), texts);
  write_npy_matrix(dir_.file("images.npy"), tg.images);
  std::vector<std::vector<double>> g;
  for (int64_t r = 0; r < tg.images.rows; ++r) g.push_back(ref_image(m, tg.images, r));
  std::vector<Ranking> ref;
  for (int64_t q = 0; q < texts.rows; q += 97) ref.push_back(rank(ref_query(m, texts, q, 2, seed), g));

  RetrieveOptions o;
  o.checkpoint = m.checkpoint;
  o.texts = dir_.file("texts.npy");
  o.gallery = dir_.file("images.npy");
  o.out = dir_.file("R.json");
  o.top_k = 7;
  o.samples = 2;
  o.seed = seed;
  o.device = "cuda";
  o.chunk_rows = 10;
  run_retrieve(o, log_);
  Retrieved all = read_retrieved(o.out), sampled;
  for (size_t q = 0; q < all.indices.size(); q += 97) {
    sampled.indices.push_back(all.indices[q]);
    sampled.scores.push_back(all.scores[q]);
  }
  expect_matches_reference(sampled, ref, 7);

  EmbedOptions e = embed_options(m, dir_, "emb");
  e.samples = 2;
  e.seed = seed;
  e.device = "cuda";
  e.chunk_rows = 16;
  run_embed(e, log_);
  const HostMatrix t = read_npy_matrix(dir_.file("emb/text_embeddings.npy"));
  const HostMatrix i = read_npy_matrix(dir_.file("emb/image_embeddings.npy"));
  for (int64_t r : {int64_t(0), int64_t(kQueryBlockRows - 1), texts.rows - 1})
    expect_rows_close(t.row(r), ref_query(m, texts, r, 2, seed), 1e-4, "text row " + std::to_string(r));
  for (int64_t r = 0; r < tg.images.rows; ++r)
    expect_rows_close(i.row(r), ref_image(m, tg.images, r), 1e-5, "image row " + std::to_string(r));
}

// ---- bad inputs: one line naming the file, nothing written ----

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == std::string::npos; }

class InferenceErrors : public Inference {
 protected:
  void SetUp() override {
    const SavedModel& m = model();
    write_npy_matrix(dir_.file("texts.npy"), random_matrix(3, m.dims.text_dim, 61));
    write_npy_matrix(dir_.file("gallery.npy"), random_matrix(20, m.dims.image_dim, 62));
  }
  RetrieveOptions retrieve() const {
    RetrieveOptions o;
    o.checkpoint = model().checkpoint;
    o.texts = dir_.file("texts.npy");
    o.gallery = dir_.file("gallery.npy");
    o.out = dir_.file("R.json");
    o.top_k = 5;
    o.device = "cpu";
    return o;
  }
  std::string retrieve_error(const RetrieveOptions& o) {
    const std::string msg = error_of([&] { run_retrieve(o, log_); });
    EXPECT_TRUE(one_line(msg)) << msg;
    EXPECT_FALSE(fs::exists(o.out)) << "an output was written despite: " << msg;
    return msg;
  }
  std::string embed_error(const EmbedOptions& o) {
    const std::string msg = error_of([&] { run_embed(o, log_); });
    EXPECT_TRUE(one_line(msg)) << msg;
    EXPECT_FALSE(fs::exists(o.out_dir)) << "an output was written despite: " << msg;
    for (const auto& e : fs::directory_iterator(dir_.path()))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    return msg;
  }
};

TEST_F(InferenceErrors, WrongTextWidthNamesFileShapeAndWidth) {
  write_npy_matrix(dir_.file("wide.npy"), random_matrix(3, model().dims.text_dim + 4, 63));
  RetrieveOptions o = retrieve();
  o.texts = dir_.file("wide.npy");
  const std::string msg = retrieve_error(o);
  EXPECT_NE(msg.find(o.texts), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3, " + std::to_string(model().dims.text_dim + 4) + ")"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected " + std::to_string(model().dims.text_dim)), std::string::npos) << msg;
}

TEST_F(InferenceErrors, WrongImageWidthNamesFile) {
  write_npy_matrix(dir_.file("narrow.npy"), random_matrix(20, model().dims.image_dim - 1, 64));
  RetrieveOptions o = retrieve();
  o.gallery = dir_.file("narrow.npy");
  const std::string msg = retrieve_error(o);
  EXPECT_NE(msg.find(o.gallery), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected " + std::to_string(model().dims.image_dim)), std::string::npos) << msg;
  EmbedOptions e = embed_options(model(), dir_, "out");
  e.images = dir_.file("narrow.npy");
  EXPECT_NE(embed_error(e).find(e.images), std::string::npos);
}

TEST_F(InferenceErrors, MissingFilesAreNamed) {
  RetrieveOptions o = retrieve();
  o.texts = dir_.file("no_such_texts.npy");
  EXPECT_NE(retrieve_error(o).find(o.texts), std::string::npos);
  o = retrieve();
  o.gallery = dir_.file("no_such_gallery.npy");
  EXPECT_NE(retrieve_error(o).find(o.gallery), std::string::npos);
  o = retrieve();
  o.checkpoint = dir_.file("no_such_model.safetensors");
  EXPECT_NE(retrieve_error(o).find(o.checkpoint), std::string::npos);
  EmbedOptions e = embed_options(model(), dir_, "out");
  e.texts = dir_.file("texts.npy");
  e.images = dir_.file("missing_images.npy");
  EXPECT_NE(embed_error(e).find(e.images), std::string::npos);
}

TEST_F(InferenceErrors, TruncatedGalleryIsNamed) {
  const std::string bytes = zscrgan_test::read_bytes(dir_.file("gallery.npy"));
  zscrgan_test::write_bytes(dir_.file("short.npy"), bytes.substr(0, bytes.size() - 10));
  RetrieveOptions o = retrieve();
  o.gallery = dir_.file("short.npy");
  const std::string msg = retrieve_error(o);
  EXPECT_NE(msg.find(o.gallery), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST_F(InferenceErrors, NonFiniteFeatureIsNamedWithItsRow) {
  HostMatrix g = random_matrix(20, model().dims.image_dim, 65);
  g.row(13)[2] = std::nanf("");
  write_npy_matrix(dir_.file("nan.npy"), g);
  RetrieveOptions o = retrieve();
  o.gallery = dir_.file("nan.npy");
  o.chunk_rows = 8;
  const std::string msg = retrieve_error(o);
  EXPECT_NE(msg.find(o.gallery), std::string::npos) << msg;
  EXPECT_NE(msg.find("row 13"), std::string::npos) << msg;
}

TEST_F(InferenceErrors, BadOptions) {
  RetrieveOptions o = retrieve();
  o.top_k = 21;  // the gallery has 20 rows
  EXPECT_NE(retrieve_error(o).find(o.gallery), std::string::npos);
  o = retrieve();
  o.top_k = 0;
  retrieve_error(o);
  o = retrieve();
  o.samples = 0;
  retrieve_error(o);
  o = retrieve();
  o.chunk_rows = 0;
  retrieve_error(o);
  o = retrieve();
  o.out = dir_.file("no_such_folder/R.json");
  EXPECT_NE(retrieve_error(o).find("no_such_folder"), std::string::npos);
  EmbedOptions e = embed_options(model(), dir_, "out");
  e.texts.clear();
  e.images.clear();
  embed_error(e);
}

TEST_F(InferenceErrors, EmbedRefusesToReplaceAForeignFolder) {
  fs::create_directories(dir_.file("mine"));
  zscrgan_test::write_bytes(dir_.file("mine/notes.txt"), "keep me");
  EmbedOptions e = embed_options(model(), dir_, "mine");
  e.images.clear();
  const std::string msg = error_of([&] { run_embed(e, log_); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find("notes.txt"), std::string::npos) << msg;
  EXPECT_EQ(zscrgan_test::read_bytes(dir_.file("mine/notes.txt")), "keep me");
  EXPECT_FALSE(fs::exists(dir_.file("mine/text_embeddings.npy")));
}

}  // namespace
}  // namespace zscrgan
