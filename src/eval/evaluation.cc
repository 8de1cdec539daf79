#include "eval/evaluation.h"

#include <algorithm>
#include <unordered_set>

#include "core/error.h"
#include "eval/retrieval.h"

namespace zscrgan {

Evaluator::Evaluator(Backend& be, const Model& model, const Dataset& data, const Tensor& texts,
                     const Tensor& images, int top_k, ApDivisor ap_divisor, uint64_t seed)
    : be_(be), texts_(texts), images_(images), top_k_(top_k), ap_divisor_(ap_divisor), seed_(seed) {
  check_top_k_supported(be, top_k);  // here, before training, not at the first evaluation
  std::unordered_set<int64_t> unseen(data.test_classes.begin(), data.test_classes.end());
  std::vector<int32_t> rows;
  for (size_t r = 0; r < data.text_labels.size(); ++r)
    if (unseen.count(data.text_labels[r])) {
      rows.push_back(static_cast<int32_t>(r));
      query_labels_.push_back(data.text_labels[r]);
    }
  for (size_t r = 0; r < data.image_labels.size(); ++r)
    if (unseen.count(data.image_labels[r])) {
      rows.push_back(static_cast<int32_t>(r));
      gallery_labels_.push_back(data.image_labels[r]);
    }
  n_queries_ = static_cast<int>(query_labels_.size());
  n_gallery_ = static_cast<int>(gallery_labels_.size());
  if (static_cast<size_t>(top_k) > gallery_labels_.size())
    fail("top_k ", top_k, " exceeds the ", gallery_labels_.size(),
         " gallery images of the unseen classes");
  const ModelDims& d = model.dims();
  const int text_rows = std::min(kQueryBlockRows, n_queries_);
  const int image_rows = std::min(kQueryBlockRows, n_gallery_);
  auto bytes = [](size_t rows, size_t cols) { return align_up(rows * cols * sizeof(float)); };
  block_ = std::make_unique<DeviceBlock>(
      be_, align_up(rows.size() * sizeof(int32_t)) + bytes(text_rows, d.text_dim) +
               bytes(image_rows, d.image_dim) + bytes(rows.size(), d.embed_dim) + 8 * kAllocAlignment);
  rows_ = reinterpret_cast<int32_t*>(block_->take(1, static_cast<int>(rows.size())).data);
  be_.upload_bytes(rows_, rows.data(), rows.size() * sizeof(int32_t));
  gathered_texts_ = block_->take(text_rows, d.text_dim);
  gathered_images_ = block_->take(image_rows, d.image_dim);
  embeddings_ = block_->take(static_cast<int>(rows.size()), d.embed_dim);
  encoder_ = std::make_unique<Encoder>(be_, model, text_rows, image_rows);
}

Evaluator::~Evaluator() = default;

EvalResult Evaluator::evaluate(int64_t round) {
  const uint64_t key = query_noise_key(seed_, round);
  Tensor queries = embeddings_.row_block(0, n_queries_);
  Tensor gallery = embeddings_.row_block(n_queries_, n_gallery_);
  for (int first = 0, block = 0; first < n_queries_; first += kQueryBlockRows, ++block) {
    const int n = std::min(kQueryBlockRows, n_queries_ - first);
    Tensor t = gathered_texts_.row_block(0, n);
    be_.gather_rows(t, texts_, IndexSpan{rows_ + first, n});
    encoder_->embed_queries(t, block, 1, key, queries.row_block(first, n));
  }
  for (int first = 0; first < n_gallery_; first += kQueryBlockRows) {
    const int n = std::min(kQueryBlockRows, n_gallery_ - first);
    Tensor v = gathered_images_.row_block(0, n);
    be_.gather_rows(v, images_, IndexSpan{rows_ + n_queries_ + first, n});
    be_.copy(gallery.row_block(first, n), encoder_->embed_images(v));
  }
  const TopKLists lists = retrieve_topk(be_, queries, gallery, top_k_, 1 << 16);
  const RetrievalMetrics metrics =
      compute_retrieval_metrics(query_labels_, gallery_labels_, lists, ap_divisor_);
  EvalResult r;
  r.k = top_k_;
  r.prec_at_k = metrics.prec_at_k;
  r.map_at_k = metrics.map_at_k;
  r.top1 = metrics.top1;
  r.query_labels = query_labels_;
  r.gallery_labels = gallery_labels_;
  r.retrieved = lists.index;
  return r;
}

}  // namespace zscrgan
