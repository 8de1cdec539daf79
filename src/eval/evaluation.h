// Precision@K, mAP@K and Top-1 of a model on a dataset's unseen classes, as docs/algorithm.md
// defines the evaluation: every text of an unseen class is a query, every image of one is the
// gallery. The queries go through the Encoder with the evaluation noise of `seed` and the
// rounds the model has trained (fresh for every round), so training's evaluation after a
// round and `zscrgan_cuda evaluate` on that round's checkpoint compute the same numbers (on the
// same device; evaluate takes the run's tf32 setting too), and evaluating never changes training.
#ifndef ZSCRGAN_EVALUATION_H
#define ZSCRGAN_EVALUATION_H

#include <cstdint>
#include <memory>
#include <vector>

#include "data/dataset.h"
#include "model/encoder.h"
#include "eval/metrics.h"

namespace zscrgan {

struct EvalResult {
  int k = 0;
  double prec_at_k = 0;
  double map_at_k = 0;
  double top1 = 0;
  std::vector<int64_t> query_labels;
  std::vector<int64_t> gallery_labels;
  std::vector<int64_t> retrieved;  // n_queries x k gallery positions, best first
};

class Evaluator {
 public:
  // texts and images: every row of `data` on the backend (they must outlive the evaluator).
  // Throws Error when top_k exceeds the unseen classes' images.
  Evaluator(Backend& be, const Model& model, const Dataset& data, const Tensor& texts,
            const Tensor& images, int top_k, ApDivisor ap_divisor, uint64_t seed);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // The metrics of the model as it is after `round` rounds of training (which keys the noise).
  EvalResult evaluate(int64_t round);

 private:
  Backend& be_;
  Tensor texts_, images_;
  int top_k_;
  ApDivisor ap_divisor_;
  uint64_t seed_;
  std::vector<int64_t> query_labels_, gallery_labels_;
  int n_queries_ = 0, n_gallery_ = 0;
  std::unique_ptr<DeviceBlock> block_;
  int32_t* rows_ = nullptr;  // query text rows, then gallery image rows
  Tensor gathered_texts_, gathered_images_;  // one block of inputs
  Tensor embeddings_;                        // queries, then gallery
  std::unique_ptr<Encoder> encoder_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_EVALUATION_H
