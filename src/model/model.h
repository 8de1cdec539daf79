// The ZSCRGAN networks and losses, exactly as docs/algorithm.md states them.
//
//   condition  h = lrelu(t Wc + bc) (2E); c = h[:, :E] + exp(h[:, E:]) * eps
//   generator  [c, z] -> Gf lrelu -> 2Gf lrelu -> Dv relu
//   critic     [v, t] -> Df lrelu -> 1
//   CSEM       e(v) = lrelu(v W + b) (E)
//
// Parameters live in three groups, one per optimizer (generator = condition + generator;
// critic; CSEM). Each group's parameters, gradients and optimizer state are contiguous ranges
// of one start-up allocation, so an optimizer step is one pass over flat arrays.
#ifndef ZSCRGAN_MODEL_H
#define ZSCRGAN_MODEL_H

#include <memory>
#include <string>
#include <vector>

#include "backend/arena.h"
#include "autograd/tape.h"

namespace zscrgan {

struct ModelDims {
  int text_dim = 0;   // Dt
  int image_dim = 0;  // Dv
  int embed_dim = 0;  // E
  int z_dim = 0;      // Z
  int gf_dim = 0;     // Gf
  int df_dim = 0;     // Df
};

struct Linear {
  Var w;  // (in, out)
  Var b;  // (1, out)
};
// The same layer with no parameter gradients (gradients w.r.t. its input still flow).
inline Linear frozen(const Linear& l) { return Linear{constant(l.w.value), constant(l.b.value)}; }

enum class OptimizerKind { RmsProp, Adam };

struct ParamGroup {
  std::string name;
  OptimizerKind optimizer = OptimizerKind::RmsProp;
  Tensor params;       // 1 x N, every parameter of the group (with alignment padding)
  Tensor grads;        // 1 x N
  // Each parameter's gradient (views of grads: w and b of every layer, not the padding).
  // A step's backward defines these (Tape::backward), so grads needs no zero-fill first.
  std::vector<Tensor> gradients;
  Tensor state1;       // RMSProp: mean square (starts at 1); Adam: m
  Tensor state2;       // Adam: v; empty for RMSProp
  Tensor beta_powers;  // Adam: [beta1^t, beta2^t]; empty for RMSProp
  int64_t steps = 0;   // optimizer steps taken (host count, for logs and checkpoints)
};

// A tensor with its checkpoint name.
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

class Model {
 public:
  // Allocates everything and initializes from `seed` (see initialize).
  Model(Backend& backend, const ModelDims& dims, uint64_t seed = 0, double adam_beta1 = 0.5,
        double adam_beta2 = 0.999);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Weights ~ N(0, 0.02^2) from the Philox stream of `seed`, biases 0, optimizer state reset.
  void initialize(uint64_t seed);

  const ModelDims& dims() const { return dims_; }
  Backend& backend() const { return backend_; }

  Linear condition, gen1, gen2, gen3;  // G step
  Linear critic1, critic2;             // D step
  Linear csem;                         // CSEM step
  ParamGroup generator_group, critic_group, csem_group;

  // Every parameter and optimizer-state tensor, named as checkpoints store them (under "param/"
  // and "state/"): "<network>.<layer>.w|b", e.g. "critic.fc1.w", "generator.condition.b";
  // "optimizer.<group>.<slot>", e.g. "optimizer.critic.mean_square", "optimizer.csem.m".
  std::vector<NamedTensor> parameter_tensors() const;  // weights and biases only
  std::vector<NamedTensor> state_tensors() const;      // optimizer state
  size_t bytes() const { return block_->size_bytes(); }

 private:
  Backend& backend_;
  ModelDims dims_;
  float adam_beta1_, adam_beta2_;
  std::unique_ptr<DeviceBlock> block_;
  std::vector<std::pair<std::string, Linear*>> layers_;
};

// ---- forward passes (trainable or frozen is chosen by the Linear passed in) ----
struct Conditioned {
  Var c;  // B x E
  Var h;  // B x 2E, [mu | log_sigma] after the LeakyReLU
};
Conditioned condition_forward(Tape& tape, const Linear& cond, const Var& text, const Tensor& eps);
Var generator_forward(Tape& tape, const Linear& g1, const Linear& g2, const Linear& g3,
                      const Var& c, const Var& z);
// images: k x B rows (k stacked passes over the same B texts) or B rows.
Var critic_forward(Tape& tape, const Linear& d1, const Linear& d2, const Var& images,
                   const Var& texts);
Var csem_forward(Tape& tape, const Linear& csem, const Var& images);

// ---- losses ----
struct LossWeights {
  float mm_reg_coeff = 2.f;
  float kl_div_coefficient = 1.f;
};

// L_D = (mean D(x, t) + mean D(v_wrong, t)) / 2 - mean D(v, t); the three critic passes run as
// one over 3B stacked rows.
Var critic_loss(Tape& tape, const Linear& d1, const Linear& d2, const Var& real, const Var& fake,
                const Var& wrong, const Var& texts);

// L_C = log(1 + exp(mean cos(e(xw), c1) - mean cos(e(x), c1))); x and xw pass through CSEM as
// one stack of 2B rows.
Var csem_loss(Tape& tape, const Linear& csem, const Var& x, const Var& xw, const Var& c1);

// The G step's loss and its parts (all 1x1).
struct GeneratorLoss {
  Var total, critic_fake, csem, mm, kl, kl_wrong;
};
// The matching and the wrong pairs run through condition and generator as one stack of 2B
// rows: rows [0, B) are the batch's, rows [B, 2B) the wrong ones (one weight read, not two).
struct GeneratorInputs {
  Var real;          // B x Dv, v
  Var wrong_images;  // B x Dv, v_wrong
  Var texts;         // 2B x Dt, [t; t_wrong]
  Tensor eps;        // 2B x E truncated normal, [eps for c1; eps for c1w]
  Tensor z;          // 2B x Z normal, [z; z1]
};
// Condition and generator are taken as given (trainable in the G step); the critic and CSEM
// passed in are normally frozen.
GeneratorLoss generator_loss(Tape& tape, const Linear& cond, const Linear& g1,
                             const Linear& g2, const Linear& g3, const Linear& d1,
                             const Linear& d2, const Linear& csem, const GeneratorInputs& in,
                             const LossWeights& w);

}  // namespace zscrgan

#endif  // ZSCRGAN_MODEL_H
