#include "train/round_plan.h"

#include <algorithm>
#include <vector>

namespace zscrgan {

RoundPlan RoundPlan::from_config(const Config& cfg) {
  RoundPlan p;
  p.batch_size = cfg.batch_size;
  p.n_critic = cfg.n_critic;
  p.e_step_iters = cfg.e_step_iters;
  p.m_step_iters = cfg.m_step_iters;
  p.batches_per_round = cfg.e_step_iters * (cfg.n_critic + 1) + cfg.m_step_iters;
  const int passes = std::max(1, (cfg.m_step_iters * 2 * cfg.batch_size + kRowsPerPass - 1) / kRowsPerPass);
  p.csem_chunk = std::max(1, (cfg.m_step_iters + passes - 1) / passes);
  p.csem_chunks = (cfg.m_step_iters + p.csem_chunk - 1) / p.csem_chunk;
  return p;
}

template <typename T>
T* RoundBuffers::take_array(size_t n) {
  static_assert(sizeof(T) % sizeof(float) == 0, "whole float columns");
  // The block hands out float tensors; an array of T occupies n * sizeof(T) / 4 of its columns.
  Tensor t = block_->take(1, static_cast<int>(n * (sizeof(T) / sizeof(float))));
  return static_cast<T*>(static_cast<void*>(t.data));
}

RoundBuffers::RoundBuffers(Backend& backend, const RoundPlan& plan, const Dataset& data) : plan_(plan) {
  const size_t n_rows = plan.row_count(), n_identity = plan.identity_count();
  const size_t n_losses = size_t(plan.step_loss_count());
  const size_t bytes = align_up(data.image_features.data.size() * 4) + align_up(data.text_features.data.size() * 4) +
                       align_up(n_rows * 4) + align_up(n_losses * 4) + align_up(n_identity * 4) +
                       align_up(kStepCounters * 8) + 8 * kAllocAlignment;
  block_ = std::make_unique<DeviceBlock>(backend, bytes);
  images_ = block_->take(static_cast<int>(data.image_features.rows), static_cast<int>(data.image_features.cols));
  texts_ = block_->take(static_cast<int>(data.text_features.rows), static_cast<int>(data.text_features.cols));
  backend.upload(images_, data.image_features.data.data());
  backend.upload(texts_, data.text_features.data.data());
  rows_ = take_array<int32_t>(n_rows);
  step_losses_ = block_->take(1, static_cast<int>(n_losses));
  identity_rows_ = take_array<int32_t>(n_identity);
  std::vector<int32_t> identity(n_identity);
  for (size_t i = 0; i < n_identity; ++i) identity[i] = static_cast<int32_t>(i);
  backend.upload_bytes(identity_rows_, identity.data(), n_identity * sizeof(int32_t));
  counters_ = take_array<int64_t>(kStepCounters);
}

}  // namespace zscrgan
