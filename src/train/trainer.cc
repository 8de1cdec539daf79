#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/ops.h"

namespace zscrgan {
// Captured step programs and the arena generation they were captured in.
struct Trainer::Captured {
  std::unique_ptr<CapturedProgram> e_iteration;
  int64_t e_generation = -1;
  std::unique_ptr<CapturedProgram> csem_step;
  int csem_rows = -1;  // the chunk size it was captured for (its buffers' addresses)
  int64_t csem_generation = -1;
};

Trainer::Trainer(const Config& cfg, const Dataset& data, Backend& backend)
    : cfg_(cfg),
      dataset_identity_(zscrgan::dataset_identity(data)),
      backend_(backend),
      plan_(RoundPlan::from_config(cfg)),
      sampler_(data, cfg.batch_size, cfg.train_texts,
               cfg.seed ^ 0x5A3B1E0D00C1A55Eull) {
  weights_.mm_reg_coeff = static_cast<float>(cfg.mm_reg_coeff);
  weights_.kl_div_coefficient = static_cast<float>(cfg.kl_div_coefficient);
  ModelDims dims;
  dims.text_dim = static_cast<int>(data.text_features.cols);
  dims.image_dim = static_cast<int>(data.image_features.cols);
  dims.embed_dim = cfg.embed_dim;
  dims.z_dim = cfg.z_dim;
  dims.gf_dim = cfg.gf_dim;
  dims.df_dim = cfg.df_dim;
  model_ = std::make_unique<Model>(backend_, dims, cfg.seed);
  buffers_ = std::make_unique<RoundBuffers>(backend_, plan_, data);
  host_rows_.resize(plan_.row_count());
  use_capture_ = cfg.cuda_graphs && backend_.can_capture();
  captured_ = std::make_unique<Captured>();

  arena_ = std::make_unique<Arena>(backend_, size_t(16) << 20);
  tape_ = std::make_unique<Tape>(backend_, *arena_);
  deferred_.reserve(64);
  evaluator_ = std::make_unique<Evaluator>(backend_, *model_, data, buffers_->texts(), buffers_->images(),
                                           cfg.top_k, cfg.ap_divisor, cfg.seed);
}

Trainer::~Trainer() = default;

IndexSpan Trainer::e_rows(RowArray array, int batch_in_iteration, int n_batches) const {
  IndexSpan s;
  s.data = buffers_->rows(array, batch_in_iteration);
  s.n = n_batches * cfg_.batch_size;
  s.step = buffers_->counter(StepCounter::EIteration);
  s.step_stride = int64_t(cfg_.n_critic + 1) * cfg_.batch_size;
  return s;
}

NoiseStream Trainer::e_noise(int fill) const {
  return NoiseStream{cfg_.seed, uint64_t(fill), buffers_->counter(StepCounter::EIteration), kNoisePerIteration,
                     buffers_->counter(StepCounter::NoiseBase)};
}

Tensor Trainer::gather(const Tensor& table, IndexSpan idx) {
  Tensor out = arena_->alloc(idx.n, table.cols);
  backend_.gather_rows(out, table, idx);
  return out;
}

void Trainer::reset_counter(StepCounter counter) {
  const int64_t zero = 0;
  backend_.upload_bytes(buffers_->counter(counter), &zero, sizeof zero);
}

// All four counters at once; the in-chunk CSEM counter starts at 0 (each chunk resets it).
void Trainer::upload_counters(int64_t e_iteration, int64_t csem_step) {
  int64_t counters[kStepCounters] = {};
  counters[static_cast<int>(StepCounter::EIteration)] = e_iteration;
  counters[static_cast<int>(StepCounter::CsemStep)] = csem_step;
  counters[static_cast<int>(StepCounter::CsemRow)] = 0;
  counters[static_cast<int>(StepCounter::NoiseBase)] = static_cast<int64_t>(round_noise_base_);
  backend_.upload_bytes(buffers_->counters(), counters, sizeof counters);
}

void Trainer::begin_round() {
  int32_t* h = host_rows_.data();
  for (int i = 0; i < plan_.batches_per_round; ++i)
    sampler_.next(h + plan_.row_offset(RowArray::Image, i), h + plan_.row_offset(RowArray::Text, i),
                  h + plan_.row_offset(RowArray::WrongImage, i), h + plan_.row_offset(RowArray::WrongText, i));
  backend_.upload_bytes(buffers_->all_rows(), host_rows_.data(), host_rows_.size() * sizeof(int32_t));
  round_noise_base_ = noise_offset_;
  upload_counters(0, 0);
}

void Trainer::d_steps() {
  const int b = cfg_.batch_size, nc = cfg_.n_critic;
  const ModelDims& d = model_->dims();
  Model& m = *model_;
  // One generation pass for all n_critic steps: the generator is frozen during them.
  Tensor texts = gather(buffers_->texts(), e_rows(RowArray::Text, 0, nc));
  Tensor eps = arena_->alloc(nc * b, d.embed_dim);
  Tensor z = arena_->alloc(nc * b, d.z_dim);
  backend_.fill_truncated_normal(eps, e_noise(0));
  backend_.fill_normal(z, e_noise(1));
  Var fakes;
  {
    Tape::NoRecord no_record(*tape_);
    Conditioned cd = condition_forward(*tape_, m.condition, constant(texts), eps);
    fakes = generator_forward(*tape_, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
  }
  RmsPropHyper hyper;
  hyper.lr = static_cast<float>(cfg_.discriminator_lr);
  hyper.clip = static_cast<float>(cfg_.clip_val);
  for (int k = 0; k < nc; ++k) {
    Tensor real = gather(buffers_->images(), e_rows(RowArray::Image, k, 1));
    Tensor wrong = gather(buffers_->images(), e_rows(RowArray::WrongImage, k, 1));
    Var loss = critic_loss(*tape_, m.critic1, m.critic2, constant(real),
                           constant(fakes.value.row_block(k * b, b)), constant(wrong),
                           constant(texts.row_block(k * b, b)));
    rmsprop_step(loss, m.critic_group, hyper);
    backend_.store_scalar(loss.value, buffers_->step_losses(), plan_.d_loss_slot(0, k), buffers_->counter(StepCounter::EIteration), nc);
    tape_->clear();
  }
}

void Trainer::g_step() {
  const int b = cfg_.batch_size, nc = cfg_.n_critic;
  const ModelDims& d = model_->dims();
  Model& m = *model_;
  Tensor real = gather(buffers_->images(), e_rows(RowArray::Image, nc, 1));
  Tensor wrong = gather(buffers_->images(), e_rows(RowArray::WrongImage, nc, 1));
  Tensor texts = arena_->alloc(2 * b, d.text_dim);  // [t; t_wrong]
  backend_.gather_rows(texts.row_block(0, b), buffers_->texts(), e_rows(RowArray::Text, nc, 1));
  backend_.gather_rows(texts.row_block(b, b), buffers_->texts(), e_rows(RowArray::WrongText, nc, 1));
  Tensor eps = arena_->alloc(2 * b, d.embed_dim);
  Tensor z = arena_->alloc(2 * b, d.z_dim);
  backend_.fill_truncated_normal(eps, e_noise(2));
  backend_.fill_normal(z, e_noise(3));
  GeneratorInputs in{constant(real), constant(wrong), constant(texts), eps, z};
  GeneratorLoss loss = generator_loss(*tape_, m.condition, m.gen1, m.gen2, m.gen3,
                                      frozen(m.critic1), frozen(m.critic2), frozen(m.csem), in, weights_);
  RmsPropHyper hyper;
  hyper.lr = static_cast<float>(cfg_.generator_lr);
  rmsprop_step(loss.total, m.generator_group, hyper);
  backend_.store_scalar(loss.total.value, buffers_->step_losses(), plan_.g_loss_slot(0), buffers_->counter(StepCounter::EIteration), 1);
  Tensor kl_mean = arena_->alloc(1, 1);
  ScalarTerms kl;
  kl.n = 2;
  kl.value[0] = loss.kl.value.data;
  kl.value[1] = loss.kl_wrong.value.data;
  kl.weight[0] = kl.weight[1] = 0.5f;
  backend_.combine_forward(kl, kl_mean);
  backend_.store_scalar(kl_mean, buffers_->step_losses(), plan_.kl_slot(0), buffers_->counter(StepCounter::EIteration), 1);
  tape_->clear();
  arena_->reset();
}

namespace {

// A group's update in the group's order, after a backward that deferred some of its weight
// gradients: range(begin, end, last) for each stretch of plain gradients (offsets into the
// flat group), product(d, offset, last) for each deferred one. `last` marks the final call,
// the one that ends the step (Adam advances its beta powers there).
template <typename Range, typename Product>
void update_group(const ParamGroup& group, std::vector<Tape::DeferredProduct>& deferred,
                  Range&& range, Product&& product) {
  std::sort(deferred.begin(), deferred.end(),
            [](const Tape::DeferredProduct& a, const Tape::DeferredProduct& b) { return a.grad.data < b.grad.data; });
  const int64_t total = static_cast<int64_t>(group.grads.numel());
  int64_t done = 0;
  for (size_t i = 0; i < deferred.size(); ++i) {
    const int64_t offset = deferred[i].grad.data - group.grads.data;
    if (offset > done) range(done, offset, false);
    done = offset + static_cast<int64_t>(deferred[i].grad.numel());
    product(deferred[i], offset, i + 1 == deferred.size() && done == total);
  }
  if (total > done) range(done, total, true);
}

// The tensor of `like`'s shape at `offset` in a flat group array (a gradient's parameters and
// optimizer state sit where it sits in grads).
Tensor same_place(const Tensor& flat, int64_t offset, const Tensor& like) {
  return Tensor(flat.data + offset, like.rows, like.cols, like.device);
}

Tensor flat_range(const Tensor& flat, int64_t begin, int64_t end) {
  return flat.col_block(static_cast<int>(begin), static_cast<int>(end - begin));
}

}  // namespace

void Trainer::rmsprop_step(const Var& loss, ParamGroup& group, const RmsPropHyper& hyper) {
  tape_->backward(loss, group.gradients, group.grads, &deferred_);
  update_group(
      group, deferred_,
      [&](int64_t begin, int64_t end, bool) {
        backend_.rmsprop_update(flat_range(group.params, begin, end), flat_range(group.grads, begin, end),
                                flat_range(group.state1, begin, end), hyper);
      },
      [&](const Tape::DeferredProduct& d, int64_t offset, bool) {
        backend_.weight_grad_rmsprop_update(d.x, d.dy, same_place(group.params, offset, d.grad), d.grad,
                                            same_place(group.state1, offset, d.grad), hyper);
      });
}

void Trainer::adam_step(const Var& loss, ParamGroup& group, const AdamHyper& hyper) {
  tape_->backward(loss, group.gradients, group.grads, &deferred_);
  auto step_part = [&](bool last) {
    AdamHyper h = hyper;
    h.advance_beta_powers = last;
    return h;
  };
  update_group(
      group, deferred_,
      [&](int64_t begin, int64_t end, bool last) {
        backend_.adam_update(flat_range(group.params, begin, end), flat_range(group.grads, begin, end),
                             flat_range(group.state1, begin, end), flat_range(group.state2, begin, end),
                             group.beta_powers, step_part(last));
      },
      [&](const Tape::DeferredProduct& d, int64_t offset, bool last) {
        backend_.weight_grad_adam_update(d.x, d.dy, same_place(group.params, offset, d.grad), d.grad,
                                         same_place(group.state1, offset, d.grad),
                                         same_place(group.state2, offset, d.grad), group.beta_powers,
                                         step_part(last));
      });
}

void Trainer::e_iteration() {
  d_steps();
  g_step();
  backend_.increment_counter(buffers_->counter(StepCounter::EIteration));
}

void Trainer::csem_step() {
  const int b = cfg_.batch_size;
  Model& m = *model_;
  const ModelDims& d = m.dims();
  // This step's rows of the chunk, found through the in-chunk step counter.
  IndexSpan rows{buffers_->identity_rows(), b, buffers_->counter(StepCounter::CsemRow), b};
  IndexSpan wrong_rows{buffers_->identity_rows() + chunk_rows_, b, buffers_->counter(StepCounter::CsemRow), b};
  Tensor x = arena_->alloc(b, d.image_dim), xw = arena_->alloc(b, d.image_dim);
  Tensor c1 = arena_->alloc(b, d.embed_dim);
  backend_.gather_rows(x, chunk_fakes_.value, rows);
  backend_.gather_rows(xw, chunk_fakes_.value, wrong_rows);
  backend_.gather_rows(c1, chunk_conditions_, rows);
  Var loss = csem_loss(*tape_, m.csem, constant(x), constant(xw), constant(c1));
  AdamHyper hyper;
  hyper.lr = static_cast<float>(cfg_.CSEM_lr);
  adam_step(loss, m.csem_group, hyper);
  backend_.store_scalar(loss.value, buffers_->step_losses(), plan_.csem_loss_slot(0),
                        buffers_->counter(StepCounter::CsemStep), 1);
  backend_.increment_counter(buffers_->counter(StepCounter::CsemStep));
  backend_.increment_counter(buffers_->counter(StepCounter::CsemRow));
  tape_->clear();
}

void Trainer::csem_chunk(int first, int count) {
  const int b = cfg_.batch_size, n = count * b;
  const ModelDims& d = model_->dims();
  const int batch0 = plan_.m_step_first_batch() + first;
  Model& m = *model_;
  arena_->reset();
  // One generation pass for `count` steps: condition and generator are frozen in the M-step.
  Tensor texts = arena_->alloc(2 * n, d.text_dim);  // [t of every step; t_wrong of every step]
  backend_.gather_rows(texts.row_block(0, n), buffers_->texts(), IndexSpan{buffers_->rows(RowArray::Text, batch0), n});
  backend_.gather_rows(texts.row_block(n, n), buffers_->texts(),
                       IndexSpan{buffers_->rows(RowArray::WrongText, batch0), n});
  Tensor eps = arena_->alloc(2 * n, d.embed_dim);
  Tensor z = arena_->alloc(2 * n, d.z_dim);
  const uint64_t chunk_noise = plan_.chunk_noise(first);
  const int64_t* base = buffers_->counter(StepCounter::NoiseBase);
  backend_.fill_truncated_normal(eps, NoiseStream{cfg_.seed, chunk_noise, nullptr, 0, base});
  backend_.fill_normal(z, NoiseStream{cfg_.seed, chunk_noise + 1, nullptr, 0, base});
  {
    Tape::NoRecord no_record(*tape_);
    Conditioned cd = condition_forward(*tape_, m.condition, constant(texts), eps);
    chunk_fakes_ = generator_forward(*tape_, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
    chunk_conditions_ = cd.c.value;
  }
  chunk_rows_ = n;
  reset_counter(StepCounter::CsemRow);
  size_t step_bytes = 0;  // arena bytes one CSEM step uses, measured on the eager first step
  for (int s = 0; s < count; ++s) {
    if (!use_capture_) {
      csem_step();
      continue;
    }
    Captured& cap = *captured_;
    if (cap.csem_step && cap.csem_rows == n && cap.csem_generation == arena_->generation()) {
      cap.csem_step->replay();
    } else if (s == 0) {
      const size_t before = arena_->bytes_since_reset();
      csem_step();  // the first step of a chunk runs eagerly: any arena growth happens here
      step_bytes = arena_->bytes_since_reset() - before;
    } else {
      // The recorded step must find its scratch already allocated.
      arena_->ensure_free(2 * step_bytes);
      cap.csem_step = capture(backend_, [&] { csem_step(); });
      cap.csem_rows = n;
      cap.csem_generation = arena_->generation();
      cap.csem_step->replay();
    }
  }
  m.csem_group.steps += count;
}

std::vector<float> Trainer::round_losses_checked(int e_done, int csem_done) {
  std::vector<float> losses(buffers_->step_losses().numel());
  backend_.download(buffers_->step_losses(), losses.data());
  const int nc = cfg_.n_critic, round = round_ + 1;
  auto check = [&](int slot, const char* what, int iteration, int within) {
    if (std::isfinite(losses[slot])) return;
    std::ostringstream os;
    os << "training diverged: " << what << " is " << losses[slot] << " in round " << round;
    if (within >= 0)
      os << ", E-step iteration " << iteration + 1 << ", D step " << within + 1;
    else if (iteration >= 0)
      os << (std::string(what) == "L_C" ? ", M-step CSEM step " : ", E-step iteration ") << iteration + 1;
    throw DivergenceError(os.str());
  };
  for (int i = 0; i < e_done; ++i) {
    for (int k = 0; k < nc; ++k) check(plan_.d_loss_slot(i, k), "L_D", i, k);
    check(plan_.g_loss_slot(i), "L_G", i, -1);
    check(plan_.kl_slot(i), "KL", i, -1);
  }
  for (int s = 0; s < csem_done; ++s) check(plan_.csem_loss_slot(s), "L_C", s, -1);
  return losses;
}

void Trainer::check_stopped_round_finite() {
  if (in_round_) round_losses_checked(e_done_, csem_done_);
  check_parameters_finite();
}

RoundLosses Trainer::finish_round() {
  const int e = cfg_.e_step_iters, nc = cfg_.n_critic, ms = cfg_.m_step_iters;
  const std::vector<float> losses = round_losses_checked(e, ms);
  RoundLosses out;
  for (int i = 0; i < e; ++i) {
    for (int k = 0; k < nc; ++k) out.critic += losses[plan_.d_loss_slot(i, k)];
    out.generator += losses[plan_.g_loss_slot(i)];
    out.kl += losses[plan_.kl_slot(i)];
  }
  for (int s = 0; s < ms; ++s) out.csem += losses[plan_.csem_loss_slot(s)];
  if (e > 0) {
    out.critic /= double(e) * nc;
    out.generator /= e;
    out.kl /= e;
  }
  if (ms > 0) out.csem /= ms;
  return out;
}

std::optional<RoundLosses> Trainer::run_round(const RoundHooks& hooks) {
  if (!in_round_) {
    begin_round();
    in_round_ = true;
    e_done_ = csem_done_ = 0;
  }
  Model& m = *model_;
  const int e = cfg_.e_step_iters, total = e + cfg_.m_step_iters;
  auto stop = [&] { return hooks.should_stop && hooks.should_stop(); };
  auto progress = [&] {
    if (hooks.on_progress) hooks.on_progress(e_done_ + csem_done_, total);
  };
  bool warmed_up = false;  // the first iteration run here is eager: arena growth happens there
  while (e_done_ < e) {
    if (stop()) return std::nullopt;
    Captured& cap = *captured_;
    if (!use_capture_ || !warmed_up) {
      e_iteration();
      warmed_up = true;
    } else if (cap.e_iteration && cap.e_generation == arena_->generation()) {
      cap.e_iteration->replay();
    } else {
      cap.e_iteration = capture(backend_, [&] { e_iteration(); });
      cap.e_generation = arena_->generation();
      cap.e_iteration->replay();
    }
    m.critic_group.steps += cfg_.n_critic;
    m.generator_group.steps += 1;
    ++e_done_;
    progress();
  }
  while (csem_done_ < cfg_.m_step_iters) {
    if (stop()) return std::nullopt;
    const int count = std::min(plan_.csem_chunk, cfg_.m_step_iters - csem_done_);
    csem_chunk(csem_done_, count);
    csem_done_ += count;
    progress();
  }
  arena_->reset();
  noise_offset_ = round_noise_base_ + plan_.noise_per_round();
  RoundLosses losses = finish_round();
  in_round_ = false;
  ++round_;
  return losses;
}

TrainingState Trainer::training_state() {
  TrainingState s;
  s.round = round_;
  s.noise_offset = noise_offset_;
  s.optimizer_steps = {model_->generator_group.steps, model_->critic_group.steps, model_->csem_group.steps};
  s.sampler = sampler_.state();
  RoundProgress& p = s.progress;
  p.in_round = in_round_;
  if (!in_round_) return s;
  p.e_done = e_done_;
  p.csem_done = csem_done_;
  p.noise_base = round_noise_base_;
  p.rows = host_rows_;
  p.step_losses.resize(buffers_->step_losses().numel());
  backend_.download(buffers_->step_losses(), p.step_losses.data());
  return s;
}

void Trainer::restore_training_state(const TrainingState& s) {
  const OptimizerSteps& steps = s.optimizer_steps;
  if (s.round < 0 || steps.generator < 0 || steps.critic < 0 || steps.csem < 0)
    fail("saved run state is out of range (round ", s.round, ", optimizer steps: generator ",
         steps.generator, ", critic ", steps.critic, ", CSEM ", steps.csem, ")");
  round_ = s.round;
  noise_offset_ = s.noise_offset;
  model_->generator_group.steps = s.optimizer_steps.generator;
  model_->critic_group.steps = s.optimizer_steps.critic;
  model_->csem_group.steps = s.optimizer_steps.csem;
  sampler_.restore(s.sampler);
  const RoundProgress& p = s.progress;
  const size_t n_losses = buffers_->step_losses().numel();
  in_round_ = p.in_round;
  if (!p.in_round) return;
  if (p.rows.size() != host_rows_.size() || p.step_losses.size() != n_losses ||
      p.e_done < 0 || p.e_done > cfg_.e_step_iters || p.csem_done < 0 ||
      p.csem_done > cfg_.m_step_iters || (p.csem_done > 0 && p.e_done != cfg_.e_step_iters))
    fail("saved round progress does not fit this configuration (batch rows ", p.rows.size(),
         " vs ", host_rows_.size(), ", step losses ", p.step_losses.size(), " vs ", n_losses, ")");
  // The rows index the dataset's tables: one out of range would be read out of bounds.
  for (int a = 0; a < kRowArrays; ++a) {
    const RowArray array = static_cast<RowArray>(a);
    const bool of_images = array == RowArray::Image || array == RowArray::WrongImage;
    const int64_t limit = of_images ? buffers_->images().rows : buffers_->texts().rows;
    const size_t first = plan_.row_offset(array, 0);
    for (size_t i = first; i < first + plan_.rows_per_array(); ++i)
      if (p.rows[i] < 0 || p.rows[i] >= limit)
        fail("saved round rows: ", of_images ? "image" : "text", " row ", p.rows[i], " (entry ", i,
             ") is outside the dataset's ", limit, " ", of_images ? "images" : "texts");
  }
  e_done_ = p.e_done;
  csem_done_ = p.csem_done;
  round_noise_base_ = p.noise_base;
  host_rows_ = p.rows;
  backend_.upload_bytes(buffers_->all_rows(), host_rows_.data(), host_rows_.size() * sizeof(int32_t));
  backend_.upload(buffers_->step_losses(), p.step_losses.data());
  upload_counters(e_done_, csem_done_);
}

void Trainer::latest_losses(float* d, float* g, float* c) {
  const int nc = cfg_.n_critic;
  *d = *g = *c = std::nanf("");
  auto read = [&](int slot, float* out) { backend_.download(buffers_->step_losses().col_block(slot, 1), out); };
  if (e_done_ > 0) {
    read(plan_.d_loss_slot(e_done_ - 1, nc - 1), d);
    read(plan_.g_loss_slot(e_done_ - 1), g);
  }
  if (csem_done_ > 0) read(plan_.csem_loss_slot(csem_done_ - 1), c);
}

void Trainer::check_parameters_finite() {
  for (const NamedTensor& t : model_->parameter_tensors()) {
    std::vector<float> host(t.tensor.numel());
    backend_.download(t.tensor, host.data());
    for (size_t i = 0; i < host.size(); ++i)
      if (!std::isfinite(host[i]))
        throw DivergenceError("training diverged: parameter " + t.name + " holds " +
                              std::to_string(host[i]) + " at element " + std::to_string(i) +
                              (in_round_ ? " in round " + std::to_string(round_ + 1)
                                         : " after round " + std::to_string(round_)));
  }
}

}  // namespace zscrgan
