#include "model/model.h"

#include <vector>

#include "autograd/ops.h"

namespace zscrgan {
namespace {

constexpr int kPadFloats = 64;  // every tensor in a group starts 256-byte aligned
int padded(int64_t n) { return static_cast<int>((n + kPadFloats - 1) / kPadFloats * kPadFloats); }

struct LayerShape {
  const char* name;
  Linear* layer;
  int in, out;
};

}  // namespace

Model::Model(Backend& backend, const ModelDims& d, uint64_t seed, double adam_beta1, double adam_beta2)
    : backend_(backend), dims_(d), adam_beta1_(static_cast<float>(adam_beta1)),
      adam_beta2_(static_cast<float>(adam_beta2)) {
  ZS_CHECK(d.text_dim > 0 && d.image_dim > 0 && d.embed_dim > 0 && d.z_dim > 0 && d.gf_dim > 0 &&
               d.df_dim > 0,
           "model dimensions must be positive");
  struct GroupShape {
    ParamGroup* group;
    const char* name;
    OptimizerKind opt;
    std::vector<LayerShape> layers;
  };
  std::vector<GroupShape> groups = {
      {&generator_group, "generator", OptimizerKind::RmsProp,
       {{"generator.condition", &condition, d.text_dim, 2 * d.embed_dim},
        {"generator.fc1", &gen1, d.embed_dim + d.z_dim, d.gf_dim},
        {"generator.fc2", &gen2, d.gf_dim, 2 * d.gf_dim},
        {"generator.fc3", &gen3, 2 * d.gf_dim, d.image_dim}}},
      {&critic_group, "critic", OptimizerKind::RmsProp,
       {{"critic.fc1", &critic1, d.image_dim + d.text_dim, d.df_dim},
        {"critic.fc2", &critic2, d.df_dim, 1}}},
      {&csem_group, "csem", OptimizerKind::Adam, {{"csem.fc", &csem, d.image_dim, d.embed_dim}}},
  };
  // Sizes first, then one allocation for everything.
  size_t total_floats = 0;
  std::vector<int> group_floats;
  for (const GroupShape& g : groups) {
    int n = 0;
    for (const LayerShape& l : g.layers) n += padded(int64_t(l.in) * l.out) + padded(l.out);
    group_floats.push_back(n);
    const int copies = g.opt == OptimizerKind::Adam ? 4 : 3;  // params, grads, state(s)
    total_floats += size_t(copies) * n + (g.opt == OptimizerKind::Adam ? kPadFloats : 0);
  }
  block_ = std::make_unique<DeviceBlock>(backend_, total_floats * sizeof(float) + 4096);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    GroupShape& g = groups[gi];
    ParamGroup& pg = *g.group;
    const int n = group_floats[gi];
    pg.name = g.name;
    pg.optimizer = g.opt;
    pg.params = block_->take(1, n);
    pg.grads = block_->take(1, n);
    pg.state1 = block_->take(1, n);
    if (g.opt == OptimizerKind::Adam) {
      pg.state2 = block_->take(1, n);
      pg.beta_powers = block_->take(1, 2);
    }
    int offset = 0;
    for (const LayerShape& l : g.layers) {
      auto view = [&](const Tensor& flat, int rows, int cols) {
        return Tensor(flat.data + offset, rows, cols, backend_.device());
      };
      l.layer->w = Var{view(pg.params, l.in, l.out), view(pg.grads, l.in, l.out)};
      offset += padded(int64_t(l.in) * l.out);
      l.layer->b = Var{view(pg.params, 1, l.out), view(pg.grads, 1, l.out)};
      offset += padded(l.out);
      pg.gradients.push_back(l.layer->w.grad);
      pg.gradients.push_back(l.layer->b.grad);
      layers_.emplace_back(l.name, l.layer);
    }
  }
  initialize(seed);
}

namespace {

// host[i] = scale * philox_normal(stream, i). Compiled for baseline x86-64, x86-64-v3 (AVX2,
// FMA) and x86-64-v4 (AVX-512), the best picked when the program loads: in the baseline build
// the noise's explicit fmas are libm calls and nothing vectorises (bench/README.md, "Noise
// fills"). All compute the same bits (elementwise.h).
__attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4"))) void draw_scaled_normals(
    float* host, int64_t n, NoiseStream stream, float scale) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) host[i] = scale * philox_normal(stream, static_cast<uint64_t>(i));
}

}  // namespace

void Model::initialize(uint64_t seed) {
  for (ParamGroup* g : {&generator_group, &critic_group, &csem_group}) {
    g->steps = 0;
    backend_.fill(g->params, 0.f);  // biases and alignment padding
    backend_.fill(g->grads, 0.f);
    if (g->optimizer == OptimizerKind::RmsProp) {
      backend_.fill(g->state1, 1.f);  // TF1 RMSProp starts its mean square at 1
    } else {
      backend_.fill(g->state1, 0.f);
      backend_.fill(g->state2, 0.f);
      const float powers[2] = {adam_beta1_, adam_beta2_};
      backend_.upload(g->beta_powers, powers);
    }
  }
  // Weights are drawn on the host from the shared Philox stream, so both backends start
  // from identical values.
  NoiseStream stream{seed, 0x1417ull << 32};
  for (auto& [name, layer] : layers_) {
    const Tensor& w = layer->w.value;
    std::vector<float> host(w.numel());
    draw_scaled_normals(host.data(), static_cast<int64_t>(host.size()), stream, 0.02f);
    ++stream.offset;
    backend_.upload(w, host.data());
  }
}

std::vector<NamedTensor> Model::parameter_tensors() const {
  std::vector<NamedTensor> out;
  for (const auto& [name, layer] : layers_) {
    out.push_back({name + ".w", layer->w.value});
    out.push_back({name + ".b", layer->b.value});
  }
  return out;
}

std::vector<NamedTensor> Model::state_tensors() const {
  std::vector<NamedTensor> out;
  for (const ParamGroup* g : {&generator_group, &critic_group, &csem_group}) {
    if (g->optimizer == OptimizerKind::RmsProp) {
      out.push_back({"optimizer." + g->name + ".mean_square", g->state1});
    } else {
      out.push_back({"optimizer." + g->name + ".m", g->state1});
      out.push_back({"optimizer." + g->name + ".v", g->state2});
      out.push_back({"optimizer." + g->name + ".beta_powers", g->beta_powers});
    }
  }
  return out;
}

// ---- forward passes ----

Conditioned condition_forward(Tape& tape, const Linear& cond, const Var& text, const Tensor& eps) {
  // The LeakyReLU applies to mu and log_sigma alike, as published.
  Var h = ops::dense(tape, text, cond.w, cond.b, Act::LeakyRelu);
  Var c = ops::reparam(tape, h, eps);
  return {c, h};
}

Var generator_forward(Tape& tape, const Linear& g1, const Linear& g2, const Linear& g3,
                      const Var& c, const Var& z) {
  Var h1 = ops::dense2(tape, c, z, g1.w, g1.b, Act::LeakyRelu);
  Var h2 = ops::dense(tape, h1, g2.w, g2.b, Act::LeakyRelu);
  return ops::dense(tape, h2, g3.w, g3.b, Act::Relu);
}

Var critic_forward(Tape& tape, const Linear& d1, const Linear& d2, const Var& images,
                   const Var& texts) {
  Var h;
  if (images.rows() == texts.rows()) {
    h = ops::dense2(tape, images, texts, d1.w, d1.b, Act::LeakyRelu);
  } else {
    // k stacked image blocks share their texts: [v_i, t] W = v_i W_v + t W_t, with t W_t
    // computed once for all k blocks.
    const int dv = images.cols();
    Var h_img = ops::matmul(tape, {images}, ops::slice_rows(d1.w, 0, dv));
    Var h_txt = ops::matmul(tape, {texts}, ops::slice_rows(d1.w, dv, texts.cols()));
    h = ops::bias_act(tape, ops::add_tiled(tape, h_img, h_txt), d1.b, Act::LeakyRelu);
  }
  return ops::dense(tape, h, d2.w, d2.b, Act::None);
}

Var csem_forward(Tape& tape, const Linear& csem, const Var& images) {
  return ops::dense(tape, images, csem.w, csem.b, Act::LeakyRelu);
}

// ---- losses ----

Var critic_loss(Tape& tape, const Linear& d1, const Linear& d2, const Var& real, const Var& fake,
                const Var& wrong, const Var& texts) {
  const int b = real.rows();
  Var images = ops::concat_rows(tape, {real, fake, wrong});
  Var scores = critic_forward(tape, d1, d2, images, texts);
  Var d_real = ops::mean(tape, ops::slice_rows(scores, 0, b));
  Var d_fake = ops::mean(tape, ops::slice_rows(scores, b, b));
  Var d_wrong = ops::mean(tape, ops::slice_rows(scores, 2 * b, b));
  return ops::combine(tape, {d_fake, d_wrong, d_real}, {0.5f, 0.5f, -1.f});
}

Var csem_loss(Tape& tape, const Linear& csem, const Var& x, const Var& xw, const Var& c1) {
  const int b = x.rows();
  Var e = csem_forward(tape, csem, ops::concat_rows(tape, {x, xw}));
  Var cos_r = ops::cosine_rows(tape, ops::slice_rows(e, 0, b), c1);
  Var cos_w = ops::cosine_rows(tape, ops::slice_rows(e, b, b), c1);
  return ops::softplus(tape, ops::combine(tape, {cos_w, cos_r}, {1.f, -1.f}));
}

GeneratorLoss generator_loss(Tape& tape, const Linear& cond, const Linear& g1,
                             const Linear& g2, const Linear& g3, const Linear& d1,
                             const Linear& d2, const Linear& csem, const GeneratorInputs& in,
                             const LossWeights& w) {
  const int b = in.real.rows();
  ZS_CHECK(in.texts.rows() == 2 * b && in.eps.rows == 2 * b && in.z.rows == 2 * b,
           "generator_loss: texts, eps and z must hold 2B = ", 2 * b, " rows");
  Conditioned cd = condition_forward(tape, cond, in.texts, in.eps);
  Var x2 = generator_forward(tape, g1, g2, g3, cd.c, constant(in.z));
  Var x = ops::slice_rows(x2, 0, b);
  Var xw = ops::slice_rows(x2, b, b);
  Var c1 = ops::slice_rows(cd.c, 0, b);
  GeneratorLoss out;
  out.kl = ops::kl_published(tape, ops::slice_rows(cd.h, 0, b));
  out.kl_wrong = ops::kl_published(tape, ops::slice_rows(cd.h, b, b));
  Var r = ops::l1_rows(tape, x, in.real);
  Var wr = ops::l1_rows(tape, x, in.wrong_images);
  out.mm = ops::combine(tape, {r, wr}, {1.f, -1.f}, 2.f);
  Var texts = ops::slice_rows(in.texts, 0, b);
  out.critic_fake = ops::mean(tape, critic_forward(tape, d1, d2, x, texts));
  out.csem = csem_loss(tape, csem, x, xw, c1);
  out.total = ops::combine(tape, {out.critic_fake, out.csem, out.mm, out.kl, out.kl_wrong},
                           {-1.f, 1.f, w.mm_reg_coeff, 0.5f * w.kl_div_coefficient,
                            0.5f * w.kl_div_coefficient});
  return out;
}

}  // namespace zscrgan
