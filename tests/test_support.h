// Helpers shared by the CPU tests: random host data, a CPU backend with an arena and a tape,
// and the finite-difference gradient checker.
#ifndef ZSCRGAN_TEST_SUPPORT_H
#define ZSCRGAN_TEST_SUPPORT_H

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"
#include "autograd/tape.h"
#include "backend/cpu/cpu_backend.h"

namespace zscrgan::testing {

// A CPU backend, an arena and a tape, ready for ops.
struct CpuContext {
  std::unique_ptr<Backend> be = make_cpu_backend();
  Arena arena{*be, size_t(1) << 22};
  Tape tape{*be, arena};
  std::mt19937 rng{1234};

  Tensor random(int rows, int cols, float scale = 1.f, float offset = 0.f) {
    Tensor t = persistent(rows, cols);
    std::normal_distribution<float> n(0.f, 1.f);
    for (size_t i = 0; i < t.numel(); ++i) t.data[i] = offset + scale * n(rng);
    return t;
  }
  Tensor zeros(int rows, int cols) {
    Tensor t = persistent(rows, cols);
    for (size_t i = 0; i < t.numel(); ++i) t.data[i] = 0.f;
    return t;
  }
  // A trainable variable with its own zeroed gradient.
  Var param(int rows, int cols, float scale = 1.f) { return Var{random(rows, cols, scale), zeros(rows, cols)}; }
  Tensor persistent(int rows, int cols) {
    storage.emplace_back(size_t(rows) * cols);
    return Tensor(storage.back().data(), rows, cols, Device::CPU);
  }
  std::vector<std::vector<float>> storage;
};

struct GradCheckReport {
  int checked = 0;
  int skipped_near_kink = 0;
  int failed = 0;
  double max_abs_error = 0;
  std::string failures;  // the first few, for the failure message
  bool ok() const { return failed == 0 && checked > 0 && skipped_near_kink * 10 <= checked; }
};

// Compares the tape's gradient of loss_fn() w.r.t. `target` (a CPU tensor whose gradient
// buffer is `target_grad`) with central differences, on up to `max_elements` elements.
// loss_fn builds the loss on ctx.tape from the current values. An element whose difference
// quotients at h and 2h disagree sits next to a kink (ReLU, |.|) and is skipped; more than 10%
// skipped fails the check. Tolerance: rtol relative, plus atol_frac of the tensor's largest
// gradient, plus the float32 rounding of the loss divided by h.
inline GradCheckReport grad_check(CpuContext& ctx, const std::function<Var()>& loss_fn,
                                  Tensor target, Tensor target_grad, int max_elements = 48,
                                  float h = 4e-3f, float rtol = 3e-2f, float atol_frac = 2e-3f) {
  GradCheckReport rep;
  ctx.arena.reset();
  ctx.tape.clear();
  for (size_t i = 0; i < target_grad.numel(); ++i) target_grad.data[i] = 0.f;
  Var loss = loss_fn();
  // Float32 rounding of the loss bounds what a difference quotient can resolve.
  const double rounding = 8 * 6e-8 * std::max(1.0, double(std::fabs(loss.value.data[0]))) / h;
  ctx.tape.backward(loss);
  std::vector<float> analytic(target_grad.data, target_grad.data + target_grad.numel());
  ctx.tape.clear();
  double max_grad = 0;
  for (float g : analytic) max_grad = std::max(max_grad, double(std::fabs(g)));
  auto eval = [&]() {
    ctx.arena.reset();
    Tape::NoRecord nr(ctx.tape);
    return double(loss_fn().value.data[0]);
  };
  std::mt19937 pick(99);
  const size_t n = target.numel();
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), pick);
  if (idx.size() > size_t(max_elements)) idx.resize(max_elements);
  std::ostringstream msg;
  for (size_t j : idx) {
    float& x = target.data[(j / target.cols) * target.ld + j % target.cols];
    const float orig = x;
    x = orig + h;
    const double lp = eval();
    x = orig - h;
    const double lm = eval();
    x = orig + 2 * h;
    const double lp2 = eval();
    x = orig - 2 * h;
    const double lm2 = eval();
    x = orig;
    const double fd = (lp - lm) / (2 * h);
    const double fd2 = (lp2 - lm2) / (4 * h);
    const double an = analytic[j];
    const double tol = rtol * std::max(std::fabs(an), std::fabs(fd)) + atol_frac * max_grad + rounding;
    if (std::fabs(fd - fd2) > tol) {  // the function is not smooth here
      ++rep.skipped_near_kink;
      continue;
    }
    ++rep.checked;
    const double err = std::fabs(fd - an);
    rep.max_abs_error = std::max(rep.max_abs_error, err);
    if (err > tol) {
      if (rep.failed < 5) msg << "  element " << j << ": analytic " << an << ", numeric " << fd << "\n";
      ++rep.failed;
    }
  }
  rep.failures = msg.str();
  ctx.arena.reset();
  return rep;
}

inline std::string describe(const GradCheckReport& r) {
  std::ostringstream os;
  os << r.checked << " checked, " << r.skipped_near_kink << " skipped near a kink, " << r.failed
     << " failed, max error " << r.max_abs_error << "\n"
     << r.failures;
  return os.str();
}

}  // namespace zscrgan::testing

#endif  // ZSCRGAN_TEST_SUPPORT_H
