#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/ops.h"

namespace zscrgan {
namespace {

enum RowArray { kImage = 0, kText = 1, kWrongImage = 2, kWrongText = 3 };
// Step state in the backend's memory, read by the kernels of replayed steps: the E-step
// iteration, the CSEM step in the round and in its chunk, and the round's first noise offset.
enum Counter { kEIteration = 0, kCsemStep = 1, kCsemRow = 2, kNoiseBase = 3, kCounters = 4 };

// Noise fills per E-step iteration (eps and z of the D steps' pass, eps and z of the G step)
// and per M-step chunk (eps and z).
constexpr int kNoisePerIteration = 4;
constexpr int kNoisePerChunk = 2;

// Rows generated per pass in the M-step and in evaluation: large enough that the generator's
// weights are read a few times per round, small enough to bound the activations.
constexpr int kRowsPerPass = 4096;

}  // namespace

// Captured step programs and the arena generation they were captured in.
struct Trainer::Captured {
  std::unique_ptr<CapturedProgram> e_iteration;
  int64_t e_generation = -1;
  std::unique_ptr<CapturedProgram> csem_step;
  int csem_rows = -1;  // the chunk size it was captured for (its buffers' addresses)
  int64_t csem_generation = -1;
};

Trainer::Trainer(const Config& cfg, const Dataset& data, Backend& backend)
    : cfg_(cfg), backend_(backend),
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

  const int b = cfg.batch_size;
  batches_per_round_ = cfg.e_step_iters * (cfg.n_critic + 1) + cfg.m_step_iters;
  const int n_step_losses = cfg.e_step_iters * cfg.n_critic + 2 * cfg.e_step_iters + cfg.m_step_iters;
  const size_t n_rows = 4 * size_t(batches_per_round_) * b;
  const int chunks = std::max(1, (cfg.m_step_iters * 2 * b + kRowsPerPass - 1) / kRowsPerPass);
  csem_chunk_ = std::max(1, (cfg.m_step_iters + chunks - 1) / chunks);
  const size_t n_identity = 2 * size_t(csem_chunk_) * b;
  const size_t floats = align_up(data.image_features.data.size() * 4) / 4 +
                        align_up(data.text_features.data.size() * 4) / 4 + align_up(n_rows * 4) / 4 +
                        align_up(size_t(n_step_losses) * 4) / 4 + align_up(n_identity * 4) / 4 +
                        align_up(kCounters * 8) / 4;
  data_block_ = std::make_unique<DeviceBlock>(backend_, floats * 4 + 8 * kAllocAlignment);
  images_ = data_block_->take(static_cast<int>(data.image_features.rows), dims.image_dim);
  texts_ = data_block_->take(static_cast<int>(data.text_features.rows), dims.text_dim);
  backend_.upload(images_, data.image_features.data.data());
  backend_.upload(texts_, data.text_features.data.data());
  round_rows_ = reinterpret_cast<int32_t*>(data_block_->take(1, static_cast<int>(n_rows)).data);
  step_losses_ = data_block_->take(1, n_step_losses);
  identity_rows_ = reinterpret_cast<int32_t*>(data_block_->take(1, static_cast<int>(n_identity)).data);
  std::vector<int32_t> identity(n_identity);
  for (size_t i = 0; i < n_identity; ++i) identity[i] = static_cast<int32_t>(i);
  backend_.upload_bytes(identity_rows_, identity.data(), n_identity * sizeof(int32_t));
  counters_ = reinterpret_cast<int64_t*>(data_block_->take(1, 2 * kCounters).data);
  host_rows_.resize(n_rows);
  use_capture_ = cfg.cuda_graphs && backend_.can_capture();
  captured_ = std::make_unique<Captured>();

  arena_ = std::make_unique<Arena>(backend_, size_t(16) << 20);
  tape_ = std::make_unique<Tape>(backend_, *arena_);
  evaluator_ = std::make_unique<Evaluator>(backend_, *model_, data, texts_, images_, cfg.top_k,
                                           cfg.ap_divisor, cfg.seed);
}

Trainer::~Trainer() = default;

IndexSpan Trainer::e_rows(int array, int batch_in_iteration, int n_batches) const {
  const int b = cfg_.batch_size;
  const size_t per_array = size_t(batches_per_round_) * b;
  IndexSpan s;
  s.data = round_rows_ + array * per_array + size_t(batch_in_iteration) * b;
  s.n = n_batches * b;
  s.step = counters_ + kEIteration;
  s.step_stride = int64_t(cfg_.n_critic + 1) * b;
  return s;
}

NoiseStream Trainer::e_noise(int fill) const {
  return NoiseStream{cfg_.seed, uint64_t(fill), counters_ + kEIteration, kNoisePerIteration,
                     counters_ + kNoiseBase};
}

Tensor Trainer::gather(const Tensor& table, IndexSpan idx) {
  Tensor out = arena_->alloc(idx.n, table.cols);
  backend_.gather_rows(out, table, idx);
  return out;
}

void Trainer::reset_counter(int64_t* counter) {
  const int64_t zero = 0;
  backend_.upload_bytes(counter, &zero, sizeof zero);
}

void Trainer::begin_round() {
  const int b = cfg_.batch_size;
  const size_t per_array = size_t(batches_per_round_) * b;
  int32_t* h = host_rows_.data();
  for (int i = 0; i < batches_per_round_; ++i) {
    const size_t at = size_t(i) * b;
    sampler_.next(h + kImage * per_array + at, h + kText * per_array + at,
                  h + kWrongImage * per_array + at, h + kWrongText * per_array + at);
  }
  backend_.upload_bytes(round_rows_, host_rows_.data(), host_rows_.size() * sizeof(int32_t));
  round_noise_base_ = state_.noise_offset;
  const int64_t counters[kCounters] = {0, 0, 0, static_cast<int64_t>(round_noise_base_)};
  backend_.upload_bytes(counters_, counters, sizeof counters);
}

void Trainer::d_steps() {
  const int b = cfg_.batch_size, nc = cfg_.n_critic;
  const ModelDims& d = model_->dims();
  Model& m = *model_;
  // One generation pass for all n_critic steps: the generator is frozen during them.
  Tensor texts = gather(texts_, e_rows(kText, 0, nc));
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
    Tensor real = gather(images_, e_rows(kImage, k, 1));
    Tensor wrong = gather(images_, e_rows(kWrongImage, k, 1));
    backend_.fill(m.critic_group.grads, 0.f);
    Var loss = critic_loss(*tape_, m.critic1, m.critic2, constant(real),
                           constant(fakes.value.row_block(k * b, b)), constant(wrong),
                           constant(texts.row_block(k * b, b)));
    tape_->backward(loss);
    backend_.rmsprop_update(m.critic_group.params, m.critic_group.grads, m.critic_group.state1, hyper);
    backend_.store_scalar(loss.value, step_losses_, k, counters_ + kEIteration, nc);
    tape_->clear();
  }
}

void Trainer::g_step() {
  const int b = cfg_.batch_size, nc = cfg_.n_critic, e = cfg_.e_step_iters;
  const ModelDims& d = model_->dims();
  Model& m = *model_;
  Tensor real = gather(images_, e_rows(kImage, nc, 1));
  Tensor wrong = gather(images_, e_rows(kWrongImage, nc, 1));
  Tensor texts = arena_->alloc(2 * b, d.text_dim);  // [t; t_wrong]
  backend_.gather_rows(texts.row_block(0, b), texts_, e_rows(kText, nc, 1));
  backend_.gather_rows(texts.row_block(b, b), texts_, e_rows(kWrongText, nc, 1));
  Tensor eps = arena_->alloc(2 * b, d.embed_dim);
  Tensor z = arena_->alloc(2 * b, d.z_dim);
  backend_.fill_truncated_normal(eps, e_noise(2));
  backend_.fill_normal(z, e_noise(3));
  backend_.fill(m.generator_group.grads, 0.f);
  GeneratorInputs in{constant(real), constant(wrong), constant(texts), eps, z};
  GeneratorLoss loss = generator_loss(*tape_, m.condition, m.gen1, m.gen2, m.gen3,
                                      frozen(m.critic1), frozen(m.critic2), frozen(m.csem), in, weights_);
  tape_->backward(loss.total);
  RmsPropHyper hyper;
  hyper.lr = static_cast<float>(cfg_.generator_lr);
  backend_.rmsprop_update(m.generator_group.params, m.generator_group.grads, m.generator_group.state1, hyper);
  backend_.store_scalar(loss.total.value, step_losses_, int64_t(e) * nc, counters_ + kEIteration, 1);
  Tensor kl_mean = arena_->alloc(1, 1);
  ScalarTerms kl;
  kl.n = 2;
  kl.value[0] = loss.kl.value.data;
  kl.value[1] = loss.kl_wrong.value.data;
  kl.weight[0] = kl.weight[1] = 0.5f;
  backend_.combine_forward(kl, kl_mean);
  backend_.store_scalar(kl_mean, step_losses_, int64_t(e) * (nc + 1), counters_ + kEIteration, 1);
  tape_->clear();
  arena_->reset();
}

void Trainer::e_iteration() {
  d_steps();
  g_step();
  backend_.increment_counter(counters_ + kEIteration);
}

void Trainer::csem_step() {
  const int b = cfg_.batch_size;
  Model& m = *model_;
  const ModelDims& d = m.dims();
  // This step's rows of the chunk, found through the in-chunk step counter.
  IndexSpan rows{identity_rows_, b, counters_ + kCsemRow, b};
  IndexSpan wrong_rows{identity_rows_ + chunk_rows_, b, counters_ + kCsemRow, b};
  Tensor x = arena_->alloc(b, d.image_dim), xw = arena_->alloc(b, d.image_dim);
  Tensor c1 = arena_->alloc(b, d.embed_dim);
  backend_.gather_rows(x, chunk_fakes_.value, rows);
  backend_.gather_rows(xw, chunk_fakes_.value, wrong_rows);
  backend_.gather_rows(c1, chunk_conditions_, rows);
  backend_.fill(m.csem_group.grads, 0.f);
  Var loss = csem_loss(*tape_, m.csem, constant(x), constant(xw), constant(c1));
  tape_->backward(loss);
  AdamHyper hyper;
  hyper.lr = static_cast<float>(cfg_.CSEM_lr);
  backend_.adam_update(m.csem_group.params, m.csem_group.grads, m.csem_group.state1,
                       m.csem_group.state2, m.csem_group.beta_powers, hyper);
  backend_.store_scalar(loss.value, step_losses_, int64_t(cfg_.e_step_iters) * (cfg_.n_critic + 2),
                        counters_ + kCsemStep, 1);
  backend_.increment_counter(counters_ + kCsemStep);
  backend_.increment_counter(counters_ + kCsemRow);
  tape_->clear();
}

void Trainer::csem_chunk(int first, int count) {
  const int b = cfg_.batch_size, n = count * b;
  const ModelDims& d = model_->dims();
  const int batch0 = cfg_.e_step_iters * (cfg_.n_critic + 1) + first;
  const size_t per_array = size_t(batches_per_round_) * b;
  Model& m = *model_;
  arena_->reset();
  // One generation pass for `count` steps: condition and generator are frozen in the M-step.
  Tensor texts = arena_->alloc(2 * n, d.text_dim);  // [t of every step; t_wrong of every step]
  backend_.gather_rows(texts.row_block(0, n), texts_,
                       IndexSpan{round_rows_ + kText * per_array + size_t(batch0) * b, n});
  backend_.gather_rows(texts.row_block(n, n), texts_,
                       IndexSpan{round_rows_ + kWrongText * per_array + size_t(batch0) * b, n});
  Tensor eps = arena_->alloc(2 * n, d.embed_dim);
  Tensor z = arena_->alloc(2 * n, d.z_dim);
  const uint64_t chunk_noise = uint64_t(cfg_.e_step_iters) * kNoisePerIteration +
                               uint64_t(first / csem_chunk_) * kNoisePerChunk;
  const int64_t* base = counters_ + kNoiseBase;
  backend_.fill_truncated_normal(eps, NoiseStream{cfg_.seed, chunk_noise, nullptr, 0, base});
  backend_.fill_normal(z, NoiseStream{cfg_.seed, chunk_noise + 1, nullptr, 0, base});
  {
    Tape::NoRecord no_record(*tape_);
    Conditioned cd = condition_forward(*tape_, m.condition, constant(texts), eps);
    chunk_fakes_ = generator_forward(*tape_, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
    chunk_conditions_ = cd.c.value;
  }
  chunk_rows_ = n;
  reset_counter(counters_ + kCsemRow);
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
      backend_.begin_capture();
      csem_step();
      cap.csem_step = backend_.end_capture();
      cap.csem_rows = n;
      cap.csem_generation = arena_->generation();
      cap.csem_step->replay();
    }
  }
  m.csem_group.steps += count;
}

RoundLosses Trainer::finish_round() {
  std::vector<float> losses(step_losses_.numel());
  backend_.download(step_losses_, losses.data());
  const int e = cfg_.e_step_iters, nc = cfg_.n_critic, ms = cfg_.m_step_iters;
  const int round = state_.round + 1;
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
  RoundLosses out;
  for (int i = 0; i < e; ++i) {
    for (int k = 0; k < nc; ++k) {
      check(i * nc + k, "L_D", i, k);
      out.critic += losses[i * nc + k];
    }
    check(e * nc + i, "L_G", i, -1);
    check(e * nc + e + i, "KL", i, -1);
    out.generator += losses[e * nc + i];
    out.kl += losses[e * nc + e + i];
  }
  for (int s = 0; s < ms; ++s) {
    check(e * (nc + 2) + s, "L_C", s, -1);
    out.csem += losses[e * (nc + 2) + s];
  }
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
      backend_.begin_capture();
      e_iteration();
      cap.e_iteration = backend_.end_capture();
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
    const int count = std::min(csem_chunk_, cfg_.m_step_iters - csem_done_);
    csem_chunk(csem_done_, count);
    csem_done_ += count;
    progress();
  }
  arena_->reset();
  const int chunks = (cfg_.m_step_iters + csem_chunk_ - 1) / csem_chunk_;
  state_.noise_offset = round_noise_base_ + uint64_t(e) * kNoisePerIteration +
                        uint64_t(chunks) * kNoisePerChunk;
  RoundLosses losses = finish_round();
  in_round_ = false;
  ++state_.round;
  return losses;
}

RoundProgress Trainer::round_progress() {
  RoundProgress p;
  p.in_round = in_round_;
  if (!in_round_) return p;
  p.e_done = e_done_;
  p.csem_done = csem_done_;
  p.noise_base = round_noise_base_;
  p.rows = host_rows_;
  p.step_losses.resize(step_losses_.numel());
  backend_.download(step_losses_, p.step_losses.data());
  return p;
}

void Trainer::restore_round_progress(const RoundProgress& p) {
  in_round_ = p.in_round;
  if (!p.in_round) return;
  if (p.rows.size() != host_rows_.size() || p.step_losses.size() != step_losses_.numel() ||
      p.e_done < 0 || p.e_done > cfg_.e_step_iters || p.csem_done < 0 ||
      p.csem_done > cfg_.m_step_iters || (p.csem_done > 0 && p.e_done != cfg_.e_step_iters))
    fail("saved round progress does not fit this configuration (batch rows ", p.rows.size(),
         " vs ", host_rows_.size(), ", step losses ", p.step_losses.size(), " vs ",
         step_losses_.numel(), ")");
  e_done_ = p.e_done;
  csem_done_ = p.csem_done;
  round_noise_base_ = p.noise_base;
  host_rows_ = p.rows;
  backend_.upload_bytes(round_rows_, host_rows_.data(), host_rows_.size() * sizeof(int32_t));
  backend_.upload(step_losses_, p.step_losses.data());
  const int64_t counters[kCounters] = {e_done_, csem_done_, 0, static_cast<int64_t>(round_noise_base_)};
  backend_.upload_bytes(counters_, counters, sizeof counters);
}

void Trainer::latest_losses(float* d, float* g, float* c) {
  const int e = cfg_.e_step_iters, nc = cfg_.n_critic;
  *d = *g = *c = std::nanf("");
  auto read = [&](int slot, float* out) { backend_.download(step_losses_.col_block(slot, 1), out); };
  if (e_done_ > 0) {
    read((e_done_ - 1) * nc + nc - 1, d);
    read(e * nc + e_done_ - 1, g);
  }
  if (csem_done_ > 0) read(e * (nc + 2) + csem_done_ - 1, c);
}

void Trainer::check_parameters_finite() {
  for (const NamedTensor& t : model_->parameter_tensors()) {
    std::vector<float> host(t.tensor.numel());
    backend_.download(t.tensor, host.data());
    for (size_t i = 0; i < host.size(); ++i)
      if (!std::isfinite(host[i]))
        throw DivergenceError("training diverged: parameter " + t.name + " holds " +
                              std::to_string(host[i]) + " at element " + std::to_string(i) +
                              " after round " + std::to_string(state_.round));
  }
}

}  // namespace zscrgan
