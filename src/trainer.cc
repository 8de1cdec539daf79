#include "zscrgan/trainer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_set>

#include "zscrgan/metrics.h"
#include "zscrgan/ops.h"
#include "zscrgan/retrieval.h"

namespace zscrgan {
namespace {

enum RowArray { kImage = 0, kText = 1, kWrongImage = 2, kWrongText = 3 };

// Rows generated per pass in the M-step and in evaluation: large enough that the generator's
// weights are read a few times per round, small enough to bound the activations.
constexpr int kRowsPerPass = 4096;

ApDivisor ap_divisor_of(const std::string& s) {
  return s == "min_relevant_k" ? ApDivisor::MinRelevantK : ApDivisor::RelevantInTopK;
}

}  // namespace

Trainer::Trainer(const Config& cfg, const Dataset& data, Backend& backend)
    : cfg_(cfg), backend_(backend),
      sampler_(data, cfg.batch_size, cfg.train_texts == "all" ? TrainTexts::All : TrainTexts::First,
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
  model_ = std::make_unique<Model>(backend_, dims);
  model_->initialize(cfg.seed);

  // Evaluation rows: every text of an unseen class is a query; every image of one is the gallery.
  std::unordered_set<int64_t> unseen(data.test_classes.begin(), data.test_classes.end());
  for (size_t r = 0; r < data.text_labels.size(); ++r)
    if (unseen.count(data.text_labels[r])) {
      eval_query_rows_.push_back(static_cast<int32_t>(r));
      query_labels_.push_back(data.text_labels[r]);
    }
  for (size_t r = 0; r < data.image_labels.size(); ++r)
    if (unseen.count(data.image_labels[r])) {
      eval_gallery_rows_.push_back(static_cast<int32_t>(r));
      gallery_labels_.push_back(data.image_labels[r]);
    }
  if (static_cast<size_t>(cfg.top_k) > eval_gallery_rows_.size())
    fail("top_k ", cfg.top_k, " exceeds the ", eval_gallery_rows_.size(),
         " gallery images of the unseen classes");

  const int b = cfg.batch_size;
  batches_per_round_ = cfg.e_step_iters * (cfg.n_critic + 1) + cfg.m_step_iters;
  const int n_step_losses = cfg.e_step_iters * cfg.n_critic + 2 * cfg.e_step_iters + cfg.m_step_iters;
  const size_t n_rows = 4 * size_t(batches_per_round_) * b;
  const size_t n_eval = eval_query_rows_.size() + eval_gallery_rows_.size();
  const size_t floats = align_up(data.image_features.data.size() * 4) / 4 +
                        align_up(data.text_features.data.size() * 4) / 4 + align_up(n_rows * 4) / 4 +
                        align_up(n_eval * 4) / 4 + align_up(size_t(n_step_losses) * 4) / 4 +
                        align_up(n_eval * size_t(cfg.embed_dim) * 4) / 4;
  data_block_ = std::make_unique<DeviceBlock>(backend_, floats * 4 + 8 * kAllocAlignment);
  images_ = data_block_->take(static_cast<int>(data.image_features.rows), dims.image_dim);
  texts_ = data_block_->take(static_cast<int>(data.text_features.rows), dims.text_dim);
  backend_.upload(images_, data.image_features.data.data());
  backend_.upload(texts_, data.text_features.data.data());
  round_rows_ = reinterpret_cast<int32_t*>(data_block_->take(1, static_cast<int>(n_rows)).data);
  eval_rows_ = reinterpret_cast<int32_t*>(data_block_->take(1, static_cast<int>(n_eval)).data);
  std::vector<int32_t> eval_rows(eval_query_rows_);
  eval_rows.insert(eval_rows.end(), eval_gallery_rows_.begin(), eval_gallery_rows_.end());
  backend_.upload_bytes(eval_rows_, eval_rows.data(), eval_rows.size() * sizeof(int32_t));
  step_losses_ = data_block_->take(1, n_step_losses);
  eval_embeddings_ = data_block_->take(static_cast<int>(n_eval), cfg.embed_dim);
  host_rows_.resize(n_rows);

  const int chunks = std::max(1, (cfg.m_step_iters * 2 * b + kRowsPerPass - 1) / kRowsPerPass);
  csem_chunk_ = std::max(1, (cfg.m_step_iters + chunks - 1) / chunks);

  arena_ = std::make_unique<Arena>(backend_, size_t(16) << 20);
  tape_ = std::make_unique<Tape>(backend_, *arena_);
}

Trainer::~Trainer() = default;

IndexSpan Trainer::rows(int array, int first_batch, int n_batches) const {
  const size_t per_array = size_t(batches_per_round_) * cfg_.batch_size;
  IndexSpan s;
  s.data = round_rows_ + array * per_array + size_t(first_batch) * cfg_.batch_size;
  s.n = n_batches * cfg_.batch_size;
  return s;
}

Tensor Trainer::gather(const Tensor& table, IndexSpan idx) {
  Tensor out = arena_->alloc(idx.n, table.cols);
  backend_.gather_rows(out, table, idx);
  return out;
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
}

void Trainer::d_steps(int iteration) {
  const int b = cfg_.batch_size, nc = cfg_.n_critic;
  const ModelDims& d = model_->dims();
  const int first = iteration * (nc + 1);
  Model& m = *model_;
  // One generation pass for all n_critic steps: the generator is frozen during them.
  Tensor texts = gather(texts_, rows(kText, first, nc));
  Tensor eps = arena_->alloc(nc * b, d.embed_dim);
  Tensor z = arena_->alloc(nc * b, d.z_dim);
  backend_.fill_truncated_normal(eps, next_noise());
  backend_.fill_normal(z, next_noise());
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
    Tensor real = gather(images_, rows(kImage, first + k, 1));
    Tensor wrong = gather(images_, rows(kWrongImage, first + k, 1));
    backend_.fill(m.critic_group.grads, 0.f);
    Var loss = critic_loss(*tape_, m.critic1, m.critic2, constant(real),
                           constant(fakes.value.row_block(k * b, b)), constant(wrong),
                           constant(texts.row_block(k * b, b)));
    tape_->backward(loss);
    backend_.rmsprop_update(m.critic_group.params, m.critic_group.grads, m.critic_group.state1, hyper);
    ++m.critic_group.steps;
    backend_.copy(step_losses_.col_block(iteration * nc + k, 1), loss.value);
    tape_->clear();
  }
}

void Trainer::g_step(int iteration) {
  const int b = cfg_.batch_size, nc = cfg_.n_critic;
  const ModelDims& d = model_->dims();
  const int batch = iteration * (nc + 1) + nc;
  Model& m = *model_;
  Tensor real = gather(images_, rows(kImage, batch, 1));
  Tensor wrong = gather(images_, rows(kWrongImage, batch, 1));
  Tensor texts = arena_->alloc(2 * b, d.text_dim);  // [t; t_wrong]
  backend_.gather_rows(texts.row_block(0, b), texts_, rows(kText, batch, 1));
  backend_.gather_rows(texts.row_block(b, b), texts_, rows(kWrongText, batch, 1));
  Tensor eps = arena_->alloc(2 * b, d.embed_dim);
  Tensor z = arena_->alloc(2 * b, d.z_dim);
  backend_.fill_truncated_normal(eps, next_noise());
  backend_.fill_normal(z, next_noise());
  backend_.fill(m.generator_group.grads, 0.f);
  GeneratorInputs in{constant(real), constant(wrong), constant(texts), eps, z};
  GeneratorLoss loss = generator_loss(*tape_, m, m.condition, m.gen1, m.gen2, m.gen3,
                                      frozen(m.critic1), frozen(m.critic2), frozen(m.csem), in, weights_);
  tape_->backward(loss.total);
  RmsPropHyper hyper;
  hyper.lr = static_cast<float>(cfg_.generator_lr);
  backend_.rmsprop_update(m.generator_group.params, m.generator_group.grads, m.generator_group.state1, hyper);
  ++m.generator_group.steps;
  const int g_slot = cfg_.e_step_iters * nc + iteration;
  backend_.copy(step_losses_.col_block(g_slot, 1), loss.total.value);
  ScalarTerms kl;
  kl.n = 2;
  kl.value[0] = loss.kl.value.data;
  kl.value[1] = loss.kl_wrong.value.data;
  kl.weight[0] = kl.weight[1] = 0.5f;
  backend_.combine_forward(kl, step_losses_.col_block(g_slot + cfg_.e_step_iters, 1));
  tape_->clear();
  arena_->reset();
}

void Trainer::csem_steps(int first, int count) {
  const int b = cfg_.batch_size, n = count * b;
  const ModelDims& d = model_->dims();
  const int batch0 = cfg_.e_step_iters * (cfg_.n_critic + 1) + first;
  Model& m = *model_;
  // One generation pass for `count` steps: condition and generator are frozen in the M-step.
  Tensor texts = arena_->alloc(2 * n, d.text_dim);  // [t of every step; t_wrong of every step]
  backend_.gather_rows(texts.row_block(0, n), texts_, rows(kText, batch0, count));
  backend_.gather_rows(texts.row_block(n, n), texts_, rows(kWrongText, batch0, count));
  Tensor eps = arena_->alloc(2 * n, d.embed_dim);
  Tensor z = arena_->alloc(2 * n, d.z_dim);
  backend_.fill_truncated_normal(eps, next_noise());
  backend_.fill_normal(z, next_noise());
  Conditioned cd;
  Var fakes;
  {
    Tape::NoRecord no_record(*tape_);
    cd = condition_forward(*tape_, m.condition, constant(texts), eps);
    fakes = generator_forward(*tape_, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
  }
  AdamHyper hyper;
  hyper.lr = static_cast<float>(cfg_.CSEM_lr);
  const int slot0 = cfg_.e_step_iters * (cfg_.n_critic + 2);
  for (int s = 0; s < count; ++s) {
    backend_.fill(m.csem_group.grads, 0.f);
    Var loss = csem_loss(*tape_, m.csem, constant(fakes.value.row_block(s * b, b)),
                         constant(fakes.value.row_block(n + s * b, b)),
                         constant(cd.c.value.row_block(s * b, b)));
    tape_->backward(loss);
    backend_.adam_update(m.csem_group.params, m.csem_group.grads, m.csem_group.state1,
                         m.csem_group.state2, m.csem_group.beta_powers, hyper);
    ++m.csem_group.steps;
    backend_.copy(step_losses_.col_block(slot0 + first + s, 1), loss.value);
    tape_->clear();
  }
  arena_->reset();
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

RoundLosses Trainer::train_round() {
  begin_round();
  for (int i = 0; i < cfg_.e_step_iters; ++i) {
    d_steps(i);
    g_step(i);
  }
  for (int s = 0; s < cfg_.m_step_iters; s += csem_chunk_)
    csem_steps(s, std::min(csem_chunk_, cfg_.m_step_iters - s));
  RoundLosses losses = finish_round();
  ++state_.round;
  return losses;
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

EvalResult Trainer::evaluate() {
  Model& m = *model_;
  const ModelDims& d = m.dims();
  const int n_q = static_cast<int>(eval_query_rows_.size());
  const int n_g = static_cast<int>(eval_gallery_rows_.size());
  Tensor queries = eval_embeddings_.row_block(0, n_q);
  Tensor gallery = eval_embeddings_.row_block(n_q, n_g);
  Tape::NoRecord no_record(*tape_);
  // Queries: text -> condition (fresh eps) -> generator (fresh z) -> CSEM.
  for (int first = 0; first < n_q; first += kRowsPerPass) {
    const int n = std::min(kRowsPerPass, n_q - first);
    Tensor texts = gather(texts_, IndexSpan{eval_rows_ + first, n});
    Tensor eps = arena_->alloc(n, d.embed_dim);
    Tensor z = arena_->alloc(n, d.z_dim);
    backend_.fill_truncated_normal(eps, next_noise());
    backend_.fill_normal(z, next_noise());
    Conditioned cd = condition_forward(*tape_, m.condition, constant(texts), eps);
    Var x = generator_forward(*tape_, m.gen1, m.gen2, m.gen3, cd.c, constant(z));
    backend_.copy(queries.row_block(first, n), csem_forward(*tape_, m.csem, x).value);
    arena_->reset();
  }
  // Gallery: image -> CSEM.
  for (int first = 0; first < n_g; first += kRowsPerPass) {
    const int n = std::min(kRowsPerPass, n_g - first);
    Tensor images = gather(images_, IndexSpan{eval_rows_ + n_q + first, n});
    backend_.copy(gallery.row_block(first, n), csem_forward(*tape_, m.csem, constant(images)).value);
    arena_->reset();
  }
  TopKLists lists = retrieve_topk(backend_, queries, gallery, cfg_.top_k, 1 << 16);
  RetrievalMetrics metrics =
      compute_retrieval_metrics(query_labels_, gallery_labels_, lists, ap_divisor_of(cfg_.ap_divisor));
  EvalResult r;
  r.k = cfg_.top_k;
  r.prec_at_k = metrics.prec_at_k;
  r.map_at_k = metrics.map_at_k;
  r.top1 = metrics.top1;
  r.query_labels = query_labels_;
  r.gallery_labels = gallery_labels_;
  r.retrieved = lists.index;
  return r;
}

}  // namespace zscrgan
