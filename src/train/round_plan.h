// The device layout of one training round, computed from the config: which batch rows the
// round samples, where each step's loss is stored, how the M-step is chunked, and the step
// counters replayed steps read. RoundPlan is the arithmetic (host only); RoundBuffers is the
// one device block that holds the dataset and the round's arrays laid out by a plan.
#ifndef ZSCRGAN_ROUND_PLAN_H
#define ZSCRGAN_ROUND_PLAN_H

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/arena.h"
#include "backend/backend.h"
#include "config/config.h"
#include "data/dataset.h"

namespace zscrgan {

// The four sampled row arrays of a round, each batches_per_round x B.
enum class RowArray { Image = 0, Text = 1, WrongImage = 2, WrongText = 3 };
constexpr int kRowArrays = 4;

// Step state in the backend's memory, read by the kernels of replayed steps: the E-step
// iteration, the CSEM step in the round and in its chunk, and the round's first noise offset.
enum class StepCounter { EIteration = 0, CsemStep = 1, CsemRow = 2, NoiseBase = 3 };
constexpr int kStepCounters = 4;

// Noise fills per E-step iteration (eps and z of the D steps' pass, eps and z of the G step)
// and per M-step chunk (eps and z).
constexpr int kNoisePerIteration = 4;
constexpr int kNoisePerChunk = 2;

// Rows generated per pass in the M-step and in evaluation: large enough that the generator's
// weights are read a few times per round, small enough to bound the activations.
constexpr int kRowsPerPass = 4096;

struct RoundPlan {
  int batch_size = 0;
  int n_critic = 0;
  int e_step_iters = 0;
  int m_step_iters = 0;
  int batches_per_round = 0;  // e_step_iters x (n_critic + 1) + m_step_iters
  int csem_chunk = 1;         // CSEM steps per generation pass of the M-step
  int csem_chunks = 0;        // chunks of the M-step

  static RoundPlan from_config(const Config& cfg);

  size_t rows_per_array() const { return size_t(batches_per_round) * batch_size; }
  size_t row_count() const { return kRowArrays * rows_per_array(); }  // all four arrays
  // Offset of (array, batch) in the round's rows.
  size_t row_offset(RowArray a, int batch) const {
    return static_cast<int>(a) * rows_per_array() + size_t(batch) * batch_size;
  }
  // The first batch of the M-step.
  int m_step_first_batch() const { return e_step_iters * (n_critic + 1); }
  // 0, 1, 2, ...: gathers a CSEM step's rows (and wrong rows) from its chunk.
  size_t identity_count() const { return 2 * size_t(csem_chunk) * batch_size; }

  // Step-loss slots: D steps (e_step_iters x n_critic), G steps, KL of the G steps, CSEM steps.
  int step_loss_count() const { return e_step_iters * n_critic + 2 * e_step_iters + m_step_iters; }
  int d_loss_slot(int iteration, int k) const { return iteration * n_critic + k; }
  int g_loss_slot(int iteration) const { return e_step_iters * n_critic + iteration; }
  int kl_slot(int iteration) const { return e_step_iters * (n_critic + 1) + iteration; }
  int csem_loss_slot(int step) const { return e_step_iters * (n_critic + 2) + step; }

  // Noise fills of the round, relative to its first draw.
  uint64_t chunk_noise(int first_step) const {
    return uint64_t(e_step_iters) * kNoisePerIteration + uint64_t(first_step / csem_chunk) * kNoisePerChunk;
  }
  uint64_t noise_per_round() const {
    return uint64_t(e_step_iters) * kNoisePerIteration + uint64_t(csem_chunks) * kNoisePerChunk;
  }
};

// The dataset on the device and the round's arrays, allocated once at start-up in one block.
class RoundBuffers {
 public:
  RoundBuffers(Backend& backend, const RoundPlan& plan, const Dataset& data);
  RoundBuffers(const RoundBuffers&) = delete;
  RoundBuffers& operator=(const RoundBuffers&) = delete;

  const Tensor& images() const { return images_; }  // all rows of the dataset
  const Tensor& texts() const { return texts_; }
  const Tensor& step_losses() const { return step_losses_; }  // 1 x plan.step_loss_count()

  // Rows of `array` from `batch` on, n rows (counter-free).
  const int32_t* rows(RowArray array, int batch) const { return rows_ + plan_.row_offset(array, batch); }
  int32_t* all_rows() { return rows_; }
  const int32_t* identity_rows() const { return identity_rows_; }
  int64_t* counter(StepCounter c) { return counters_ + static_cast<int>(c); }
  const int64_t* counter(StepCounter c) const { return counters_ + static_cast<int>(c); }
  int64_t* counters() { return counters_; }

 private:
  // A typed array of n elements carved from the block.
  template <typename T>
  T* take_array(size_t n);

  RoundPlan plan_;
  std::unique_ptr<DeviceBlock> block_;
  Tensor images_, texts_, step_losses_;
  int32_t* rows_ = nullptr;
  int32_t* identity_rows_ = nullptr;
  int64_t* counters_ = nullptr;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_ROUND_PLAN_H
