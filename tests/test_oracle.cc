// Our CPU losses, gradients and optimizer steps against an outside oracle: float64 PyTorch
// written from docs/algorithm.md alone (tools/torch_peer/oracle.py). Each fixture holds the
// weights, a batch and the noise of one D, one G and one CSEM step, and the oracle's losses,
// the G loss's parts, every gradient and every parameter after the step (fresh optimizer
// state, critic clipped). This test loads them into a Model on the CPU backend, runs the
// model's own loss functions, backward and optimizer updates, and compares every tensor with
// |got - ref| <= 1e-5 + 1e-3 |ref| (the largest error seen is 2% of that). Where a GPU is
// usable the CUDA backend is held to the same fixtures.
//
// Regenerate the fixtures (never needed unless the model's semantics change) with the
// commands in tools/torch_peer/README.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compare.h"
#include "backend/backend.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"

namespace zscrgan {
namespace {

constexpr double kAtol = 1e-5, kRtol = 1e-3;

std::string fixture_path(const std::string& name) {
  return std::string(ZSCRGAN_SOURCE_DIR) + "/tests/fixtures/" + name + ".safetensors";
}

float half_to_float(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(double(mant), -24);  // subnormal (and zero)
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(double(mant | 0x400), exp - 25);
  return static_cast<float>(sign ? -v : v);
}

// The elements of an F16, F32 or F64 tensor, as float.
std::vector<float> float_values(const SafeTensor& t) {
  if (t.dtype == "F32") return as_f32(t);
  const size_t n = static_cast<size_t>(t.num_elements());
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (t.dtype == "F16") {
      uint16_t h;
      std::memcpy(&h, t.bytes.data() + 2 * i, 2);
      out[i] = half_to_float(h);
    } else if (t.dtype == "F64") {
      double d;
      std::memcpy(&d, t.bytes.data() + 8 * i, 8);
      out[i] = static_cast<float>(d);
    } else {
      throw Error("tensor '" + t.name + "' has dtype " + t.dtype + ", expected F16, F32 or F64");
    }
  }
  return out;
}

// A fixture file and what the test needs from it.
struct Fixture {
  SafeTensorsFile file;
  ModelDims dims;
  int batch = 0;

  explicit Fixture(const std::string& name) : file(read_safetensors(fixture_path(name))) {
    dims.text_dim = integer("text");
    dims.image_dim = integer("image");
    dims.embed_dim = integer("embed");
    dims.z_dim = integer("z");
    dims.gf_dim = integer("gf");
    dims.df_dim = integer("df");
    batch = integer("batch");
  }
  std::string meta(const std::string& key) const {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(file.source + ": no metadata key '" + key + "'");
    return it->second;
  }
  double number(const std::string& key) const { return std::stod(meta(key)); }
  int integer(const std::string& key) const { return std::stoi(meta(key)); }
  // A tensor's elements, checked against the expected element count.
  std::vector<float> get(const std::string& name, size_t expected) const {
    const SafeTensor& t = file.at(name);
    if (static_cast<size_t>(t.num_elements()) != expected)
      throw Error(file.source + ": tensor '" + name + "' has " + std::to_string(t.num_elements()) +
                  " elements, expected " + std::to_string(expected));
    return float_values(t);
  }
  bool has(const std::string& name) const { return file.find(name) != nullptr; }
};

// The oracle's names for the model's layers. The oracle stores W as (out, in), the model keeps
// w as (in, out); both put the first part of a concatenated input ([c, z], [v, t]) first.
struct LayerName {
  const char* w;
  const char* b;
  Linear Model::*layer;
};
const LayerName kLayers[] = {
    {"cond.W", "cond.b", &Model::condition},    {"gen.W1", "gen.b1", &Model::gen1},
    {"gen.W2", "gen.b2", &Model::gen2},         {"gen.W3", "gen.b3", &Model::gen3},
    {"critic.W1", "critic.b1", &Model::critic1}, {"critic.W2", "critic.b2", &Model::critic2},
    {"csem.W", "csem.b", &Model::csem},
};
const char* const kGeneratorLayers[] = {"cond.W", "gen.W1", "gen.W2", "gen.W3"};
const char* const kCriticLayers[] = {"critic.W1", "critic.W2"};
const char* const kCsemLayers[] = {"csem.W"};

const LayerName& layer_named(const std::string& w) {
  for (const LayerName& l : kLayers)
    if (w == l.w) return l;
  throw Error("no layer named " + w);
}

// Deliberate mistakes, for the negative controls.
struct Variant {
  bool no_clip = false;                // D step without the critic clip
  bool mean_square_from_zero = false;  // RMSProp's mean square starting at 0 (PyTorch's default)
  bool swap_wrong_noise = false;       // G step with eps / eps_wrong exchanged
};

struct Check {
  std::string name;
  ::testing::AssertionResult result;
  double worst_ratio;  // largest |got - ref| / tolerance
};

class Runner {
 public:
  Runner(const Fixture& f, const Variant& v, std::unique_ptr<Backend> be = make_cpu_backend())
      : f_(f), v_(v), be_(std::move(be)) {}

  std::vector<Check> run() {
    d_step();
    g_step();
    csem_step();
    return std::move(checks_);
  }

 private:
  // A fresh model (fresh optimizer state) holding the fixture's weights.
  std::unique_ptr<Model> fresh_model() {
    auto m = std::make_unique<Model>(*be_, f_.dims, 0, f_.number("adam_beta1"), f_.number("adam_beta2"));
    for (const LayerName& l : kLayers) {
      const Linear& lin = (*m).*(l.layer);
      const int in = lin.w.rows(), out = lin.w.cols();
      const std::vector<float> w = f_.get(std::string("param.") + l.w, size_t(in) * out);
      std::vector<float> t(w.size());
      for (int o = 0; o < out; ++o)
        for (int i = 0; i < in; ++i) t[size_t(i) * out + o] = w[size_t(o) * in + i];
      be_->upload(lin.w.value, t.data());
      be_->upload(lin.b.value, f_.get(std::string("param.") + l.b, out).data());
    }
    return m;
  }
  Tensor input(const std::string& name, int rows, int cols) {
    Tensor t = arena_.alloc(rows, cols);
    be_->upload(t, f_.get(name, size_t(rows) * cols).data());
    return t;
  }
  // [a; b] of two stored B-row inputs.
  Tensor stacked(const std::string& a, const std::string& b, int cols) {
    const int n = f_.batch;
    Tensor t = arena_.alloc(2 * n, cols);
    be_->upload(t.row_block(0, n), f_.get(a, size_t(n) * cols).data());
    be_->upload(t.row_block(n, n), f_.get(b, size_t(n) * cols).data());
    return t;
  }

  void compare(const std::string& name, std::vector<float> got) {
    std::vector<float> ref;
    if (f_.has(name + ".index")) {  // stored at some elements only
      const std::vector<int64_t> at = as_i64(f_.file.at(name + ".index"));
      ref = f_.get(name, at.size());
      std::vector<float> picked;
      for (int64_t i : at) {
        if (i < 0 || size_t(i) >= got.size())
          throw Error(f_.file.source + ": " + name + ".index holds " + std::to_string(i) +
                      ", outside the tensor's " + std::to_string(got.size()) + " elements");
        picked.push_back(got[size_t(i)]);
      }
      got = picked;
    } else {
      ref = f_.get(name, got.size());
    }
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, std::fabs(double(got[i]) - ref[i]) / (kAtol + kRtol * std::fabs(ref[i])));
    checks_.push_back({name, testing::all_close(ref, got, kAtol, kRtol, f_.file.source + " " + name), worst});
  }
  void compare_scalar(const std::string& name, const Var& v) { compare(name, download(v.value)); }
  std::vector<float> download(const Tensor& t) {
    std::vector<float> host(t.numel());
    be_->download(t, host.data());
    return host;
  }
  // A layer's weight (as the oracle's (out, in)) or bias, from the value or the gradient.
  std::vector<float> layer_tensor(const Model& m, const std::string& wname, bool bias, bool grad) {
    const Linear& lin = m.*(layer_named(wname).layer);
    const Var& var = bias ? lin.b : lin.w;
    const std::vector<float> host = download(grad ? var.grad : var.value);
    if (bias) return host;
    const int in = lin.w.rows(), out = lin.w.cols();
    std::vector<float> t(host.size());
    for (int o = 0; o < out; ++o)
      for (int i = 0; i < in; ++i) t[size_t(o) * in + i] = host[size_t(i) * out + o];
    return t;
  }
  void compare_layers(const Model& m, const std::string& step, const char* const* names, int n,
                      bool grad) {
    for (int i = 0; i < n; ++i) {
      const LayerName& l = layer_named(names[i]);
      const std::string kind = grad ? ".grad." : ".after.";
      compare(step + kind + l.w, layer_tensor(m, l.w, false, grad));
      compare(step + kind + l.b, layer_tensor(m, l.w, true, grad));
    }
  }

  void d_step() {
    const int b = f_.batch;
    const ModelDims& d = f_.dims;
    auto m = fresh_model();
    Tensor v = input("batch.v", b, d.image_dim), vw = input("batch.v_wrong", b, d.image_dim);
    Tensor t = input("batch.t", b, d.text_dim);
    Tensor eps = input("d_step.eps", b, d.embed_dim), z = input("d_step.z", b, d.z_dim);
    Var fakes;
    {
      Tape::NoRecord no_record(tape_);
      Conditioned cd = condition_forward(tape_, m->condition, constant(t), eps);
      fakes = generator_forward(tape_, m->gen1, m->gen2, m->gen3, cd.c, constant(z));
    }
    be_->fill(m->critic_group.grads, 0.f);
    Var loss = critic_loss(tape_, m->critic1, m->critic2, constant(v), constant(fakes.value),
                           constant(vw), constant(t));
    tape_.backward(loss);
    compare_scalar("d_step.loss", loss);
    compare_layers(*m, "d_step", kCriticLayers, 2, true);
    RmsPropHyper h;
    h.lr = static_cast<float>(f_.number("d_lr"));
    h.clip = v_.no_clip ? 0.f : static_cast<float>(f_.number("clip_val"));
    if (v_.mean_square_from_zero) be_->fill(m->critic_group.state1, 0.f);
    be_->rmsprop_update(m->critic_group.params, m->critic_group.grads, m->critic_group.state1, h);
    compare_layers(*m, "d_step", kCriticLayers, 2, false);
    done();
  }

  void g_step() {
    const int b = f_.batch;
    const ModelDims& d = f_.dims;
    auto m = fresh_model();
    const char* eps_name = v_.swap_wrong_noise ? "g_step.eps_wrong" : "g_step.eps";
    const char* eps_wrong_name = v_.swap_wrong_noise ? "g_step.eps" : "g_step.eps_wrong";
    GeneratorInputs in{constant(input("batch.v", b, d.image_dim)),
                       constant(input("batch.v_wrong", b, d.image_dim)),
                       constant(stacked("batch.t", "batch.t_wrong", d.text_dim)),
                       stacked(eps_name, eps_wrong_name, d.embed_dim),
                       stacked("g_step.z", "g_step.z_wrong", d.z_dim)};
    LossWeights w;
    w.mm_reg_coeff = static_cast<float>(f_.number("mm_reg_coeff"));
    w.kl_div_coefficient = static_cast<float>(f_.number("kl_div_coefficient"));
    be_->fill(m->generator_group.grads, 0.f);
    GeneratorLoss loss = generator_loss(tape_, m->condition, m->gen1, m->gen2, m->gen3,
                                        frozen(m->critic1), frozen(m->critic2), frozen(m->csem), in, w);
    tape_.backward(loss.total);
    compare_scalar("g_step.loss", loss.total);
    compare_scalar("g_step.mean_d_fake", loss.critic_fake);
    compare_scalar("g_step.L_C", loss.csem);
    compare_scalar("g_step.mm", loss.mm);
    compare_scalar("g_step.kl", loss.kl);
    compare_scalar("g_step.kl_w", loss.kl_wrong);
    compare_layers(*m, "g_step", kGeneratorLayers, 4, true);
    RmsPropHyper h;
    h.lr = static_cast<float>(f_.number("g_lr"));
    if (v_.mean_square_from_zero) be_->fill(m->generator_group.state1, 0.f);
    be_->rmsprop_update(m->generator_group.params, m->generator_group.grads,
                        m->generator_group.state1, h);
    compare_layers(*m, "g_step", kGeneratorLayers, 4, false);
    done();
  }

  void csem_step() {
    const int b = f_.batch;
    const ModelDims& d = f_.dims;
    auto m = fresh_model();
    Tensor texts = stacked("batch.t", "batch.t_wrong", d.text_dim);
    Tensor eps = stacked("csem_step.eps", "csem_step.eps_wrong", d.embed_dim);
    Tensor z = stacked("csem_step.z", "csem_step.z_wrong", d.z_dim);
    Var x2;
    Conditioned cd;
    {
      Tape::NoRecord no_record(tape_);
      cd = condition_forward(tape_, m->condition, constant(texts), eps);
      x2 = generator_forward(tape_, m->gen1, m->gen2, m->gen3, cd.c, constant(z));
    }
    be_->fill(m->csem_group.grads, 0.f);
    Var loss = csem_loss(tape_, m->csem, constant(x2.value.row_block(0, b)),
                         constant(x2.value.row_block(b, b)), constant(cd.c.value.row_block(0, b)));
    tape_.backward(loss);
    compare_scalar("csem_step.loss", loss);
    compare_layers(*m, "csem_step", kCsemLayers, 1, true);
    AdamHyper h;
    h.lr = static_cast<float>(f_.number("csem_lr"));
    h.beta1 = static_cast<float>(f_.number("adam_beta1"));
    h.beta2 = static_cast<float>(f_.number("adam_beta2"));
    be_->adam_update(m->csem_group.params, m->csem_group.grads, m->csem_group.state1,
                     m->csem_group.state2, m->csem_group.beta_powers, h);
    compare_layers(*m, "csem_step", kCsemLayers, 1, false);
    done();
  }
  void done() {
    tape_.clear();
    arena_.reset();
  }

  const Fixture& f_;
  Variant v_;
  std::unique_ptr<Backend> be_;
  Arena arena_{*be_, size_t(1) << 22};
  Tape tape_{*be_, arena_};
  std::vector<Check> checks_;
};

bool passed(const std::vector<Check>& checks, const std::string& prefix) {
  bool ok = true;
  for (const Check& c : checks)
    if (c.name.rfind(prefix, 0) == 0) ok = ok && bool(c.result);
  return ok;
}

class Oracle : public ::testing::TestWithParam<const char*> {};

TEST_P(Oracle, EveryLossGradientAndStepMatches) {
  const Fixture f(GetParam());
  const std::vector<Check> checks = Runner(f, Variant{}).run();
  ASSERT_EQ(checks.size(), 3u + 5u + 2u * (4u + 8u + 2u));  // losses, G parts, tensors
  const Check* worst = &checks[0];
  for (const Check& c : checks) {
    EXPECT_TRUE(c.result) << c.name;
    if (c.worst_ratio > worst->worst_ratio) worst = &c;
  }
  std::cout << "  " << f.file.source << ": " << checks.size() << " tensors compared; largest "
            << "error " << worst->worst_ratio << " of the tolerance, in " << worst->name << "\n";
}

// The same on the CUDA backend (FP32 GEMMs, its default), where a device is usable.
TEST_P(Oracle, CudaBackendMatchesToo) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device, oracle test on CUDA skipped: " << reason;
  const Fixture f(GetParam());
  for (const Check& c : Runner(f, Variant{}, make_cuda_backend()).run()) EXPECT_TRUE(c.result) << c.name;
}

// The fixtures are informative: one step moves parameters beyond the tolerance, and the
// gradients are large against the absolute tolerance (the critic's output bias, whose gradient
// is exactly 0 in L_D, excepted).
TEST_P(Oracle, FixtureIsInformative) {
  const Fixture f(GetParam());
  for (const SafeTensor& t : f.file.tensors) {
    if (t.name.find(".grad.") == std::string::npos || t.name.find(".index") != std::string::npos)
      continue;
    const std::vector<float> g = float_values(t);
    double largest = 0;
    for (float x : g) largest = std::max(largest, double(std::fabs(x)));
    if (t.name == "d_step.grad.critic.b2") EXPECT_EQ(largest, 0.0) << t.name;
    else EXPECT_GT(largest, 100 * kAtol) << t.name << " is too small to test anything";
  }
}

// Negative controls: each deliberate mistake is caught by the very comparison above, at the
// tensors it affects, while the rest still match.
TEST_P(Oracle, NegativeControlsAreDetected) {
  const Fixture f(GetParam());
  {
    Variant v;
    v.no_clip = true;
    const auto checks = Runner(f, v).run();
    EXPECT_FALSE(passed(checks, "d_step.after.")) << "a critic step without the clip went unnoticed";
    EXPECT_TRUE(passed(checks, "d_step.grad."));
    EXPECT_TRUE(passed(checks, "g_step."));
  }
  {
    Variant v;
    v.mean_square_from_zero = true;
    const auto checks = Runner(f, v).run();
    EXPECT_FALSE(passed(checks, "g_step.after.")) << "RMSProp from mean square 0 went unnoticed";
    EXPECT_TRUE(passed(checks, "g_step.grad."));
  }
  {
    Variant v;
    v.swap_wrong_noise = true;
    const auto checks = Runner(f, v).run();
    EXPECT_FALSE(passed(checks, "g_step.loss")) << "swapped eps / eps_wrong went unnoticed";
    EXPECT_FALSE(passed(checks, "g_step.grad.")) << "swapped eps / eps_wrong went unnoticed";
    EXPECT_TRUE(passed(checks, "d_step."));
    EXPECT_TRUE(passed(checks, "csem_step."));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Oracle, ::testing::Values("oracle_demo", "oracle_odd"),
                         [](const auto& info) { return std::string(info.param).substr(7); });

}  // namespace
}  // namespace zscrgan
