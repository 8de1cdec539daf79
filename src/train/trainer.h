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
#include "train/round_plan.h"
#include "train/sampler.h"
#include "train/training_state.h"

namespace zscrgan {

struct RoundLosses {
  double critic = 0;  // mean L_D over the round's D steps
  double generator = 0;
  double csem = 0;
  double kl = 0;      // mean (kl + kl_w) / 2 over the G steps
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

class TrainerSteps;

// Owns the model, the activation arena and tape, the sampler, the round's device buffers
// (RoundBuffers, laid out by its RoundPlan), the evaluator and the captured step programs.
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
  int rounds_done() const { return round_; }
  bool in_round() const { return in_round_; }
  // The trainer's state beyond tensors (a snapshot: the unfinished round's losses are read
  // back from the device), and its restoration into a trainer built from the same config.
  // restore_training_state throws, naming what does not fit, on a state of another config.
  TrainingState training_state();
  void restore_training_state(const TrainingState& s);
  // The latest logged D, G and CSEM losses of the current round (for progress lines).
  void latest_losses(float* d, float* g, float* c);
  // Precision@K, mAP@K and Top-1 on the unseen classes (see evaluation.h: the evaluation
  // noise of the run's seed, apart from training's; evaluating changes nothing in training).
  // The metrics of the model after rounds_done() rounds, with that round's evaluation noise.
  EvalResult evaluate() { return evaluator_->evaluate(rounds_done()); }
  // Throws DivergenceError naming the tensor when any parameter is NaN or Inf.
  void check_parameters_finite();
  // Before a stopped round is saved: throws DivergenceError when a loss of the steps it ran
  // or a parameter is NaN or Inf, so that a diverged state never replaces a good checkpoint.
  void check_stopped_round_finite();

  Model& model() { return *model_; }
  const Config& config() const { return cfg_; }
  // The data this trainer trains on, as checkpoints record it.
  const DatasetIdentity& dataset_identity() const { return dataset_identity_; }
  Backend& backend() { return backend_; }
  // Whether rounds replay captured step programs (CUDA graphs) rather than issuing each call;
  // set_capture(false) forces eager rounds (on only where the backend captures).
  bool replays_captured_steps() const { return use_capture_; }
  void set_capture(bool on) { use_capture_ = on && backend_.can_capture(); }

 private:
  friend class TrainerSteps;
  struct Captured;

  // The pieces of a round (see TrainerSteps). Every step reads which batch, which noise and
  // which loss slot it uses from step counters in the backend's memory, never from host
  // arguments: one E-step iteration's calls are the same every time, so they can be captured
  // once and replayed.
  void begin_round();
  void d_steps();
  void g_step();
  void e_iteration();
  void csem_chunk(int first, int count);
  RoundLosses finish_round();
  // The round's logged step losses, read back; throws DivergenceError naming the first
  // non-finite one among the first e_done E-step iterations and csem_done CSEM steps.
  std::vector<float> round_losses_checked(int e_done, int csem_done);

  IndexSpan e_rows(RowArray array, int batch_in_iteration, int n_batches) const;
  NoiseStream e_noise(int fill) const;
  Tensor gather(const Tensor& table, IndexSpan idx);
  void csem_step();
  // The step's backward for a group, then its update: the weight gradients the tape deferred
  // go to weight_grad_rmsprop_update / weight_grad_adam_update, the rest of the group to
  // rmsprop_update / adam_update (Adam's beta powers advance in the step's last call).
  void rmsprop_step(const Var& loss, ParamGroup& group, const RmsPropHyper& hyper);
  void adam_step(const Var& loss, ParamGroup& group, const AdamHyper& hyper);
  void reset_counter(StepCounter counter);
  void upload_counters(int64_t e_iteration, int64_t csem_step);

  Config cfg_;
  DatasetIdentity dataset_identity_;
  Backend& backend_;
  LossWeights weights_;
  RoundPlan plan_;
  std::unique_ptr<Model> model_;
  BatchSampler sampler_;
  std::unique_ptr<RoundBuffers> buffers_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Tape> tape_;
  std::vector<Tape::DeferredProduct> deferred_;  // rmsprop_step's and adam_step's, capacity kept
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<Captured> captured_;
  bool use_capture_ = false;

  // Progress: rounds completed, the training noise stream's next offset, the unfinished round.
  int round_ = 0;
  uint64_t noise_offset_ = 0;
  bool in_round_ = false;
  int e_done_ = 0, csem_done_ = 0;
  uint64_t round_noise_base_ = 0;  // noise offset of the round's first draw (host copy of the device one)
  std::vector<int32_t> host_rows_; // the round's sampled rows (host copy of the device ones)

  // Per-chunk generation results read by the CSEM steps.
  Var chunk_fakes_;
  Tensor chunk_conditions_;
  int chunk_rows_ = 0;
};

// The steps of a round one at a time, for benchmarks that time a step and tests that check
// steps in isolation (capture emulation, steady-state allocations). run_round() is
// begin_round, e_step_iters x e_iteration (replayed from a captured program where the backend
// captures), csem_chunk over the M-step in chunks of csem_chunk_steps(), then finish_round.
// Driving the steps here does not advance the trainer's round count, noise offset or round
// progress: a trainer stepped this way is for measuring, not for checkpoints or run_round.
class TrainerSteps {
 public:
  explicit TrainerSteps(Trainer& t) : t_(t) {}
  void begin_round() { t_.begin_round(); }  // samples the round's batches, uploads their rows once, resets counters
  void d_steps() { t_.d_steps(); }          // n_critic critic steps on one generation pass
  void g_step() { t_.g_step(); }            // one generator step
  void e_iteration() { t_.e_iteration(); }  // d_steps, g_step, advance the E-step counter
  // CSEM steps [first, first + count): one generation pass, then the steps.
  void csem_chunk(int first, int count) { t_.csem_chunk(first, count); }
  int csem_chunk_steps() const { return t_.plan_.csem_chunk; }
  RoundLosses finish_round() { return t_.finish_round(); }  // reads the round's losses back; checks they are finite
  Arena& arena() { return *t_.arena_; }
  const RoundPlan& plan() const { return t_.plan_; }

 private:
  Trainer& t_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_TRAINER_H
