// Per-element math shared by the CPU loops and the CUDA kernels.
// Compiles as plain C++ (ZS_HD expands to nothing) and under nvcc (__host__ __device__),
// so the CPU tests check the very arithmetic the kernels run. Keep it free of state.
#ifndef ZSCRGAN_ELEMENTWISE_H
#define ZSCRGAN_ELEMENTWISE_H

#include <cmath>
#include <cstdint>

// On the host the functions are always inlined: the CPU backend's loops are compiled once per
// ISA level (backend/cpu/cpu_isa.h), and an out-of-line copy would be compiled for the
// baseline, without the caller's FMA contraction, and so round differently.
#if defined(__CUDACC__)
#define ZS_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define ZS_HD inline __attribute__((always_inline))
#else
#define ZS_HD inline
#endif

namespace zscrgan {

constexpr float kLeakySlope = 0.2f;

enum class Act : int { None = 0, LeakyRelu = 1, Relu = 2 };

ZS_HD float act_forward(float x, Act a) {
  // max(x, 0.2 x), written as the compare-select that maps onto (v)maxps: the compiler
  // vectorises it, where it keeps `x > 0 ? x : 0.2f * x` a branch. Same value everywhere,
  // 0 and NaN included.
  const float scaled = kLeakySlope * x;
  if (a == Act::LeakyRelu) return x < scaled ? scaled : x;
  if (a == Act::Relu) return x < 0.f ? 0.f : x;
  return x;
}

// Derivative from the activation's *output*: y > 0 exactly when the input was > 0, so the
// pre-activation need not be kept. At 0 this gives TF 1.13's choices: LeakyReLU'(0) = 0.2,
// ReLU'(0) = 0.
ZS_HD float act_grad_from_output(float y, Act a) {
  if (a == Act::LeakyRelu) return y > 0.f ? 1.f : kLeakySlope;
  if (a == Act::Relu) return y > 0.f ? 1.f : 0.f;
  return 1.f;
}

// d|x|/dx with TF's sign(0) = 0.
ZS_HD float sign_tf(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }

// ---- The published KL term, per element (mu, log_sigma) -------------------------------
// m = (mu + ls) / 2;  K(a, s) = -s + 0.5 (-1 + exp(2s) + a^2);  f = (K(mu, m) + K(ls, m)) / 2.
// kl = mean of f over all B x E elements.
ZS_HD float kl_element(float mu, float ls) {
  const float m = 0.5f * (mu + ls);
  const float e2m = expf(2.f * m);
  const float k_mu = -m + 0.5f * (-1.f + e2m + mu * mu);
  const float k_ls = -m + 0.5f * (-1.f + e2m + ls * ls);
  return 0.5f * (k_mu + k_ls);
}
// df/dmu = mu/2 + (exp(2m) - 1)/2, df/dls = ls/2 + (exp(2m) - 1)/2.
ZS_HD void kl_element_grad(float mu, float ls, float* d_mu, float* d_ls) {
  const float shared = 0.5f * (expf(mu + ls) - 1.f);
  *d_mu = 0.5f * mu + shared;
  *d_ls = 0.5f * ls + shared;
}

// ---- Optimizers, TensorFlow 1 semantics -----------------------------------------------
// ApplyRMSProp with momentum 0: ms += (g^2 - ms)(1 - rho); p -= lr g / sqrt(ms + eps).
// clip > 0 fuses the WGAN critic clip into the same pass.
struct RmsPropHyper {
  float lr;
  float rho = 0.9f;
  float eps = 1e-10f;
  float clip = 0.f;  // 0: no clipping
};
ZS_HD void rmsprop_tf1_update(float* p, float g, float* ms, const RmsPropHyper& h) {
  const float one_minus_rho = 1.f - h.rho;
  *ms += (g * g - *ms) * one_minus_rho;
  float v = *p - h.lr * g / sqrtf(*ms + h.eps);
  // Comparisons rather than fminf/fmaxf: these inline on x86 (fmaxf is a libm call there).
  if (h.clip > 0.f) v = v < -h.clip ? -h.clip : (v > h.clip ? h.clip : v);
  *p = v;
}

// ApplyAdam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) with the beta powers kept in float32
// exactly as TF keeps them (beta1_power, beta2_power variables multiplied after each step).
struct AdamHyper {
  float lr;
  float beta1 = 0.5f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};
ZS_HD float adam_tf1_lr_t(const AdamHyper& h, float beta1_power, float beta2_power) {
  return h.lr * sqrtf(1.f - beta2_power) / (1.f - beta1_power);
}
ZS_HD void adam_tf1_update(float* p, float g, float* m, float* v, float lr_t, const AdamHyper& h) {
  *m += (g - *m) * (1.f - h.beta1);
  *v += (g * g - *v) * (1.f - h.beta2);
  *p -= (*m * lr_t) / (sqrtf(*v) + h.eps);
}

// ---- L2 normalisation as TF's l2_normalize: x * rsqrt(max(sum x^2, 1e-12)) -------------
ZS_HD float l2_inv_norm(float sum_sq) { return 1.f / sqrtf(sum_sq > 1e-12f ? sum_sq : 1e-12f); }
// The 1e-12 floor is active (gradient of the norm is 0) when sum_sq <= 1e-12.
ZS_HD bool l2_floor_active(float sum_sq) { return sum_sq <= 1e-12f; }

// softplus as the published code writes it: log(1 + exp(x)).
ZS_HD float softplus_published(float x) { return logf(1.f + expf(x)); }
ZS_HD float softplus_grad(float x) { return 1.f / (1.f + expf(-x)); }

// ---- Philox4x32-10 counter-based generator -----------------------------------------
// The same algorithm as cuRAND's Philox4_32_10, written once here so that the CPU and the
// GPU draw identical streams from (seed, counter): noise is a pure function of its address,
// needs no state in memory, and CPU-vs-CUDA parity tests can share their noise.
struct Philox4 {
  uint32_t v[4];
};
ZS_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}
ZS_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, ctr.v[0], &hi0, &lo0);
    philox_mulhilo(0xCD9E8D57u, ctr.v[2], &hi1, &lo1);
    Philox4 next = {{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    ctr = next;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

// A noise stream: a seed and a draw offset, passed by value. Each fill of a tensor uses its
// own offset; element i of that fill is addressed by (i, attempt, offset).
// A replayed (graph-captured) step is handed the same stream every time, so whatever changes
// between its replays lives in the backend's memory and is read where the noise is drawn:
// the offset advances with a step counter, offset + (*step) * step_stride, and starts from a
// base that changes every round, + *base (the round's first noise offset). Eager code may
// leave both null.
struct NoiseStream {
  uint64_t seed = 0;
  uint64_t offset = 0;
  const int64_t* step = nullptr;
  uint64_t step_stride = 0;
  const int64_t* base = nullptr;
};
// Call where the stream is used (inside the kernel on CUDA): reads the base and the step counter.
ZS_HD NoiseStream resolve_stream(NoiseStream s) {
  if (s.base != nullptr) s.offset += static_cast<uint64_t>(*s.base);
  if (s.step != nullptr) s.offset += static_cast<uint64_t>(*s.step) * s.step_stride;
  s.step = nullptr;
  s.base = nullptr;
  return s;
}

ZS_HD double philox_uniform_open(uint32_t x) {  // (0, 1), never 0 or 1
  return (static_cast<double>(x) + 0.5) * (1.0 / 4294967296.0);
}

// Two standard normals (Box-Muller in double, rounded to float so that host and device agree
// to the last bit in all but vanishingly rare cases).
ZS_HD void philox_normal_pair(NoiseStream s, uint64_t element, uint32_t attempt, float* n0,
                              float* n1) {
  Philox4 ctr = {{static_cast<uint32_t>(element), attempt ^ static_cast<uint32_t>(element >> 32),
                  static_cast<uint32_t>(s.offset), static_cast<uint32_t>(s.offset >> 32)}};
  const Philox4 r = philox4x32_10(ctr, static_cast<uint32_t>(s.seed),
                                  static_cast<uint32_t>(s.seed >> 32));
  const double u1 = philox_uniform_open(r.v[0]);
  const double u2 = philox_uniform_open(r.v[1]);
  const double radius = sqrt(-2.0 * log(u1));
  const double angle = 6.283185307179586476925 * u2;
  *n0 = static_cast<float>(radius * cos(angle));
  *n1 = static_cast<float>(radius * sin(angle));
}

ZS_HD float philox_normal(NoiseStream s, uint64_t element) {
  float a, b;
  philox_normal_pair(s, element, 0u, &a, &b);
  return a;
}

// Truncated standard normal: draws with |x| >= 2 are drawn again (TF's truncated_normal).
// Each attempt yields two candidates; P(both rejected) ~ 0.2%, so the loop is short.
ZS_HD float philox_truncated_normal(NoiseStream s, uint64_t element) {
  for (uint32_t attempt = 0;; ++attempt) {
    float a, b;
    philox_normal_pair(s, element, attempt, &a, &b);
    if (fabsf(a) < 2.f) return a;
    if (fabsf(b) < 2.f) return b;
  }
}

}  // namespace zscrgan

#endif  // ZSCRGAN_ELEMENTWISE_H
