// The EM trainer: E-step (e_step_iters x (n_critic D steps + 1 G step)), M-step (m_step_iters
// CSEM steps), then evaluation; rounds repeat, the best retrieval is kept.
//
// Exact reorderings that cut weight traffic: the generator is frozen
// during the n_critic D steps of an E-step iteration and during the whole M-step, so the fake
// images those steps need are generated in one pass of n_critic x B rows (D steps) and in a few
// passes of many CSEM steps' rows (M-step). Same function, same distributions; only the order
// of the noise draws differs from a step-by-step loop.
#ifndef ZSCRGAN_TRAINER_H
#define ZSCRGAN_TRAINER_H

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/dataset.h"
#include "eval/evaluation.h"
#include "model/model.h"
#include "train/sampler.h"

namespace zscrgan {

struct RoundLosses {
  double critic = 0;  // mean L_D over the round's D steps
  double generator = 0;
  double csem = 0;
  double kl = 0;      // mean (kl + kl_w) / 2 over the G steps
};

// A training run's state beyond the model: what a checkpoint must hold besides parameters.
struct RunState {
  int round = 0;                // rounds completed
  uint64_t noise_offset = 0;    // next Philox offset of the training stream
  double best_score = -1;       // best Precision@K so far (-1: none yet)
  int best_round = 0;
  double elapsed_s = 0;         // training seconds so far, over all sessions
};

// Where an unfinished round stands: saved in checkpoints, so that a run stopped between two
// steps resumes exactly where it stopped.
struct RoundProgress {
  bool in_round = false;
  int e_done = 0;                  // E-step iterations completed
  int csem_done = 0;               // CSEM steps completed (a multiple of the chunk size)
  uint64_t noise_base = 0;         // noise offset of the round's first draw
  std::vector<int32_t> rows;       // the round's sampled batch rows
  std::vector<float> step_losses;  // the losses logged so far
};

// Optional hooks of a round: progress after each E-step iteration and CSEM chunk, and a stop
// request checked between steps (a signal handler's flag).
struct RoundHooks {
  std::function<void(int steps_done, int steps_total)> on_progress;
  std::function<bool()> should_stop;
};

// Raised when a loss or a parameter is not finite; names the quantity, round and step.
class DivergenceError : public Error {
 public:
  using Error::Error;
};

class Trainer {
 public:
  Trainer(const Config& cfg, const Dataset& data, Backend& backend);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs the current round (E-step then M-step), or continues the unfinished one. Returns its
  // mean losses, or nothing when should_stop asked it to stop between two steps. Throws
  // DivergenceError on a non-finite loss.
  std::optional<RoundLosses> run_round(const RoundHooks& hooks = {});
  RoundLosses train_round() { return *run_round(); }
  // A snapshot of the unfinished round (in_round false between rounds), and its restoration.
  RoundProgress round_progress();
  void restore_round_progress(const RoundProgress& p);
  // The latest logged D, G and CSEM losses of the current round (for progress lines).
  void latest_losses(float* d, float* g, float* c);
  // Precision@K, mAP@K and Top-1 on the unseen classes (see evaluation.h: the evaluation
  // noise of the run's seed, apart from training's; evaluating changes nothing in training).
  EvalResult evaluate() { return evaluator_->evaluate(); }

  // The pieces of a round, public for tests and benchmarks. train_round() is begin_round,
  // e_step_iters x e_iteration (replayed from a captured program where the backend captures),
  // csem_chunk over the M-step, then finish_round.
  //
  // Every step reads which batch, which noise and which loss slot it uses from step counters
  // in the backend's memory, never from host arguments: one E-step iteration's calls are the
  // same every time, so they can be captured once and replayed.
  void begin_round();   // samples the round's batches, uploads their rows once, resets counters
  void d_steps();       // n_critic critic steps on one generation pass
  void g_step();        // one generator step
  void e_iteration();   // d_steps, g_step, advance the E-step counter
  void csem_chunk(int first, int count);  // CSEM steps [first, first + count): one generation pass
  int csem_chunk_steps() const { return csem_chunk_; }
  RoundLosses finish_round();  // reads the round's losses back; checks they are finite

  Model& model() { return *model_; }
  BatchSampler& sampler() { return sampler_; }
  RunState& state() { return state_; }
  Arena& arena() { return *arena_; }
  const Config& config() const { return cfg_; }
  Backend& backend() { return backend_; }
  // Whether rounds replay captured step programs (CUDA graphs) rather than issuing each call.
  bool replays_captured_steps() const { return use_capture_; }
  void set_capture(bool on) { use_capture_ = on && backend_.can_capture(); }
  // Throws DivergenceError naming the tensor when any parameter is NaN or Inf.
  void check_parameters_finite();

 private:
  struct Captured;
  IndexSpan e_rows(int array, int batch_in_iteration, int n_batches) const;
  NoiseStream e_noise(int fill) const;
  Tensor gather(const Tensor& table, IndexSpan idx);
  void csem_step();
  void reset_counter(int64_t* counter);

  Config cfg_;
  Backend& backend_;
  LossWeights weights_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Tape> tape_;
  BatchSampler sampler_;
  RunState state_;
  int csem_chunk_ = 1;
  bool use_capture_ = false;
  bool in_round_ = false;
  int e_done_ = 0, csem_done_ = 0;
  std::unique_ptr<Captured> captured_;

  // Start-up allocations: the dataset on the device, the round's batch rows, step counters,
  // step losses.
  std::unique_ptr<DeviceBlock> data_block_;
  Tensor images_, texts_;          // all rows of the dataset
  int32_t* round_rows_ = nullptr;  // 4 arrays of batches_per_round x B: image, text, wrong image, wrong text
  int32_t* identity_rows_ = nullptr;  // 0, 1, 2, ...: gathers a CSEM step's rows from its chunk
  int batches_per_round_ = 0;
  int64_t* counters_ = nullptr;    // [E-step iteration, CSEM step in round, CSEM step in chunk, round noise base]
  Tensor step_losses_;             // 1 x (D steps + G steps + KL of G steps + CSEM steps) of a round
  uint64_t round_noise_base_ = 0;  // noise offset of the round's first draw (host copy of the device one)
  // Per-chunk generation results read by the CSEM steps.
  Var chunk_fakes_;
  Tensor chunk_conditions_;
  int chunk_rows_ = 0;
  std::vector<int32_t> host_rows_;
  std::unique_ptr<Evaluator> evaluator_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_TRAINER_H
