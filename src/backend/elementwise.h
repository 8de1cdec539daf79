// Per-element math shared by the CPU loops and the CUDA kernels.
// Compiles as plain C++ (ZS_HD expands to nothing) and under nvcc (__host__ __device__),
// so the CPU tests check the very arithmetic the kernels run. Keep it free of state.
#ifndef ZSCRGAN_ELEMENTWISE_H
#define ZSCRGAN_ELEMENTWISE_H

#include <cmath>
#include <cstdint>
#include <cstring>

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

// ---- Bit-level helpers ------------------------------------------------------------------
// The bits of a value as another type of the same size (std::bit_cast, C++20); memcpy compiles
// to a register move on the host and in CUDA device code alike.
template <typename To, typename From>
ZS_HD To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: the sizes differ");
  To out;
  memcpy(&out, &x, sizeof out);
  return out;
}

// a where mask is all ones, b where it is zero. Written as a ternary on the values, the
// compiler may move the computation of the one not taken into a branch of its own, and the
// CPU loop around it then no longer vectorises; masks made as `cond ? ~0 : 0` vectorise.
ZS_HD double select_bits(uint64_t mask, double a, double b) {
  return bits_as<double>((bits_as<uint64_t>(a) & mask) | (bits_as<uint64_t>(b) & ~mask));
}
ZS_HD float select_bits(uint32_t mask, float a, float b) {
  return bits_as<float>((bits_as<uint32_t>(a) & mask) | (bits_as<uint32_t>(b) & ~mask));
}

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

// dy * act'(y), bit for bit, written as a mask select between dy and its scaled value: with
// the factor as a ternary (act_grad_from_output), the compiler branches around the multiply
// by 1 and the AVX2 loops stay scalar.
ZS_HD float act_backward(float dy, float y, Act a) {
  const uint32_t positive = y > 0.f ? ~0u : 0u;
  if (a == Act::LeakyRelu) return select_bits(positive, dy, kLeakySlope * dy);
  if (a == Act::Relu) return select_bits(positive, dy, 0.f * dy);
  return dy;
}

// d|x|/dx with TF's sign(0) = 0.
ZS_HD float sign_tf(float x) {
  const float s = x > 0.f ? 1.f : 0.f;  // two selects in a row: GCC 14 vectorises no nesting
  return x < 0.f ? -1.f : s;
}

// ---- exp of a float, written out in double ------------------------------------------------
// Not libm's expf, for the reason given at the Box-Muller functions below: libm's expf, its
// vector versions and CUDA's differ in their last bits, and a libm call keeps a CPU loop
// scalar. Every product that feeds a sum is an explicit fma. x = n ln2 + r with |r| <= ln2/2
// (n = round(x log2 e), through the 1.5 * 2^52 shifter, which leaves n in the low bits);
// exp(r) by its Taylor series to degree 11 (remainder below 1e-14 relative); 2^n written into
// a double's exponent bits; one rounding to float at the end. So this is the correctly
// rounded exp but within about 1e-14 of a rounding boundary, where it is one ulp off
// (tests/test_ops_forward.cc holds it to libm's double exp).
ZS_HD float portable_expf(float x) {
  // Past these exp(x) rounds to infinity (e^89 > FLT_MAX) or to zero (e^-104 < 2^-150);
  // clamping keeps 2^n a normal double. NaN fails both comparisons and stays NaN.
  double v = static_cast<double>(x);
  v = select_bits(v > 89.0 ? ~0ull : 0ull, 89.0, v);
  v = select_bits(v < -104.0 ? ~0ull : 0ull, -104.0, v);
  constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 in two parts, as in box_muller_log
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double shifted = fma(v, kLog2e, kShifter);
  const double n = shifted - kShifter;  // exact
  const double r = fma(-n, kLn2Lo, fma(-n, kLn2Hi, v));
  double p = 1.0 / 39916800.0;  // 1/11!
  p = fma(p, r, 1.0 / 3628800.0);
  p = fma(p, r, 1.0 / 362880.0);
  p = fma(p, r, 1.0 / 40320.0);
  p = fma(p, r, 1.0 / 5040.0);
  p = fma(p, r, 1.0 / 720.0);
  p = fma(p, r, 1.0 / 120.0);
  p = fma(p, r, 1.0 / 24.0);
  p = fma(p, r, 1.0 / 6.0);
  p = fma(p, r, 0.5);
  p = fma(p, r, 1.0);
  p = fma(p, r, 1.0);
  // shifted's bits minus the shifter's are n (two's complement); n + 1023 is 2^n's exponent.
  const uint64_t n_bits = bits_as<uint64_t>(shifted) - bits_as<uint64_t>(kShifter);
  const double two_to_n = bits_as<double>((n_bits + 1023u) << 52);
  return static_cast<float>(p * two_to_n);  // exact product (a power of two), then one rounding
}

// The exp the shared formulas below call unless told otherwise. (The CPU backend's baseline
// level, x86-64 without FMA, passes libm's instead: there each fma() is a libm call, and
// portable_expf costs about 10x libm's expf; that level rounds differently anyway.)
struct PortableExp {
  ZS_HD float operator()(float x) const { return portable_expf(x); }
};

// ---- The published KL term, per element (mu, log_sigma) -------------------------------
// m = (mu + ls) / 2;  K(a, s) = -s + 0.5 (-1 + exp(2s) + a^2);  f = (K(mu, m) + K(ls, m)) / 2.
// kl = mean of f over all B x E elements.
template <typename Exp = PortableExp>
ZS_HD float kl_element(float mu, float ls, Exp exp = Exp()) {
  const float m = 0.5f * (mu + ls);
  const float e2m = exp(2.f * m);
  const float k_mu = -m + 0.5f * (-1.f + e2m + mu * mu);
  const float k_ls = -m + 0.5f * (-1.f + e2m + ls * ls);
  return 0.5f * (k_mu + k_ls);
}
// df/dmu = mu/2 + (exp(2m) - 1)/2, df/dls = ls/2 + (exp(2m) - 1)/2.
template <typename Exp = PortableExp>
ZS_HD void kl_element_grad(float mu, float ls, float* d_mu, float* d_ls, Exp exp = Exp()) {
  const float shared = 0.5f * (exp(mu + ls) - 1.f);
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
  // Two selects in a row, not nested: GCC 14 vectorises no loop holding the nested form.
  if (h.clip > 0.f) {
    v = v < -h.clip ? -h.clip : v;
    v = v > h.clip ? h.clip : v;
  }
  *p = v;
}

// ApplyAdam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) with the beta powers kept in float32
// exactly as TF keeps them (beta1_power, beta2_power variables multiplied after each step).
struct AdamHyper {
  float lr;
  float beta1 = 0.5f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  // Advance the powers after this update. A step whose group takes several updates (ranges,
  // weights formed from their factors) advances them in its last one only.
  bool advance_beta_powers = true;
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
struct PhiloxMulHiLo {
  ZS_HD void operator()(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) const {
    philox_mulhilo(a, b, hi, lo);
  }
};
// The ten rounds on the counter's four words, of type Word: uint32_t, or a vector of them in
// the CPU loops, with mulhilo(a, word, &hi, &lo) the word type's 32 x 32 -> 64-bit products.
template <typename Word, typename MulHiLo>
ZS_HD void philox4x32_10_rounds(Word* ctr, uint32_t k0, uint32_t k1, MulHiLo mulhilo) {
  for (int round = 0; round < 10; ++round) {
    Word hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, ctr[0], &hi0, &lo0);
    mulhilo(0xCD9E8D57u, ctr[2], &hi1, &lo1);
    const Word next0 = hi1 ^ ctr[1] ^ k0, next2 = hi0 ^ ctr[3] ^ k1;
    ctr[0] = next0;
    ctr[1] = lo1;
    ctr[2] = next2;
    ctr[3] = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}
ZS_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  philox4x32_10_rounds(ctr.v, k0, k1, PhiloxMulHiLo{});
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

// ---- Box-Muller's logarithm, cosine and sine, written out in double ----------------------
// Not libm's: libm's and CUDA's log and sincos differ in their last bits from each other and
// from their own vector versions, and these must give the same bits on every backend, at
// every ISA level and in vectorised and scalar loops alike. So they are plain arithmetic in
// which every product that feeds a sum is either an explicit fma or exact (a power of two),
// leaving a compiler's contraction of a * b + c nothing to change; division and sqrt are
// correctly rounded everywhere. Accurate to a few double ulps (tests/test_ops_forward.cc holds
// them to libm), far below the float the noise is rounded to.
// log(v) for a positive normal double, after fdlibm's e_log.c: v = 2^k m with m in
// [sqrt(2)/2, sqrt(2)), f = m - 1 (exact), s = f / (2 + f), and
// log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with R fdlibm's minimax polynomial.
ZS_HD double box_muller_log(double v) {
  const uint64_t bits = bits_as<uint64_t>(v);
  const bool high = (bits & 0x000FFFFFFFFFFFFFull) > 0x6A09E667F3BCCull;  // m > sqrt(2)
  const double m = bits_as<double>((bits & 0x000FFFFFFFFFFFFFull) |
                                   (high ? 0x3FE0000000000000ull : 0x3FF0000000000000ull));
  const double k = static_cast<double>(static_cast<int>(bits >> 52) - (high ? 1022 : 1023));
  const double f = m - 1.0;
  const double hfsq = 0.5 * (f * f);
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * fma(w, fma(w, 1.531383769920937332e-01, 2.222219843214978396e-01),
                            3.999999999940941908e-01);
  const double r = fma(z, fma(w, fma(w, fma(w, 1.479819860511658591e-01, 1.818357216161805012e-01),
                                     2.857142874366239149e-01),
                              6.666666666666735130e-01),
                       t1);
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // trailing zeros: k * kLn2Hi is exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  return fma(k, kLn2Hi, -((hfsq - fma(s, hfsq + r, k * kLn2Lo)) - f));
}

// cos(2 pi u) and sin(2 pi u) for u = (x + 0.5) / 2^32, the angle of philox_uniform_open(x):
// the nearest quarter turn q comes from x's top bits, the rest r = u - q/4 in [-1/8, 1/8] is
// exact, and theta = 2 pi r in [-pi/4, pi/4] goes through Taylor series to degree 18 (the next
// terms are below 1e-19).
ZS_HD void box_muller_cos_sin(uint32_t x, double* cos_out, double* sin_out) {
  const uint32_t q = ((x >> 29) + 1u) >> 1;  // x / 2^30 rounded to nearest: 0..4
  // x - q 2^30 in [-2^29, 2^29), through 32-bit wrap-around (q = 4 wraps to 0): 32-bit
  // integers keep the loop vectorised on AVX2, which converts no 64-bit integer to double.
  const int32_t rest = static_cast<int32_t>(x - (q << 30));
  const double r = (static_cast<double>(rest) + 0.5) * (1.0 / 4294967296.0);
  const double theta = 6.283185307179586476925 * r;
  const double z = theta * theta;
  const double sin_poly =
      fma(z, fma(z, fma(z, fma(z, fma(z, fma(z, fma(z, 1.0 / 355687428096000.0,
                                                   -1.0 / 1307674368000.0),
                                              1.0 / 6227020800.0),
                                         -1.0 / 39916800.0),
                                    1.0 / 362880.0),
                               -1.0 / 5040.0),
                          1.0 / 120.0),
          -1.0 / 6.0);
  const double sin_t = fma(theta * z, sin_poly, theta);
  const double cos_poly =
      fma(z, fma(z, fma(z, fma(z, fma(z, fma(z, fma(z, fma(z, -1.0 / 6402373705728000.0,
                                                          1.0 / 20922789888000.0),
                                                     -1.0 / 87178291200.0),
                                                1.0 / 479001600.0),
                                           -1.0 / 3628800.0),
                                      1.0 / 40320.0),
                                 -1.0 / 720.0),
                            1.0 / 24.0),
          -0.5);
  const double cos_t = fma(z, cos_poly, 1.0);
  // angle = q pi/2 + theta: odd quarters swap cos and sin; the signs follow the quadrant.
  // The swap's mask comes from a comparison of doubles: GCC 14 turns `bit ? ~0 : 0` on an
  // integer bit, and its arithmetic forms, into a conversion to bool that keeps the loop
  // around this scalar. The sign masks are shifts of the quadrant's bits.
  const uint32_t quadrant = q & 3u;
  const double odd_quadrant = static_cast<double>(static_cast<int32_t>(quadrant & 1u));
  const uint64_t odd = odd_quadrant != 0.0 ? ~0ull : 0ull;
  const uint64_t cos_negative = static_cast<uint64_t>((quadrant + 1u) & 2u) << 62;  // 1 and 2
  const uint64_t sin_negative = static_cast<uint64_t>(quadrant & 2u) << 62;         // 2 and 3
  *cos_out = bits_as<double>(bits_as<uint64_t>(select_bits(odd, sin_t, cos_t)) ^ cos_negative);
  *sin_out = bits_as<double>(bits_as<uint64_t>(select_bits(odd, cos_t, sin_t)) ^ sin_negative);
}

// The Philox counter of (element, attempt, stream), and Philox4x32-10 of it, whose first two
// words are the Box-Muller inputs.
ZS_HD Philox4 philox_counter_for_normal(NoiseStream s, uint64_t element, uint32_t attempt) {
  return Philox4{{static_cast<uint32_t>(element), attempt ^ static_cast<uint32_t>(element >> 32),
                  static_cast<uint32_t>(s.offset), static_cast<uint32_t>(s.offset >> 32)}};
}
ZS_HD Philox4 philox_for_normal(NoiseStream s, uint64_t element, uint32_t attempt) {
  return philox4x32_10(philox_counter_for_normal(s, element, attempt),
                       static_cast<uint32_t>(s.seed), static_cast<uint32_t>(s.seed >> 32));
}

// Two standard normals: Box-Muller in double, rounded to float, r * cos and r * sin of
// r = sqrt(-2 log u1), angle 2 pi u2, from the Philox words (u1, u2).
ZS_HD void box_muller_pair(uint32_t u1, uint32_t u2, float* n0, float* n1) {
  const double radius = sqrt(-2.0 * box_muller_log(philox_uniform_open(u1)));
  double c, sn;
  box_muller_cos_sin(u2, &c, &sn);
  *n0 = static_cast<float>(radius * c);
  *n1 = static_cast<float>(radius * sn);
}
ZS_HD void philox_normal_pair(NoiseStream s, uint64_t element, uint32_t attempt, float* n0,
                              float* n1) {
  const Philox4 r = philox_for_normal(s, element, attempt);
  box_muller_pair(r.v[0], r.v[1], n0, n1);
}

// The first of the pair alone (its sine is never computed).
ZS_HD float philox_normal(NoiseStream s, uint64_t element) {
  float a, b;
  philox_normal_pair(s, element, 0u, &a, &b);
  return a;
}

// Truncated standard normal: draws with |x| >= 2 are drawn again (TF's truncated_normal).
// Each attempt yields two candidates; P(both rejected) ~ 0.2%, so the loop is short.
// truncated_pick is one attempt's choice: a if inside (-2, 2), else b if inside, else 2, which
// no accepted draw equals (the CPU loops' marker for "draw again").
ZS_HD float truncated_pick(float a, float b) {
  const uint32_t take_a = fabsf(a) < 2.f ? ~0u : 0u, take_b = fabsf(b) < 2.f ? ~0u : 0u;
  return select_bits(take_a, a, select_bits(take_b, b, 2.f));
}
ZS_HD float philox_truncated_normal(NoiseStream s, uint64_t element) {
  for (uint32_t attempt = 0;; ++attempt) {
    float a, b;
    philox_normal_pair(s, element, attempt, &a, &b);
    const float pick = truncated_pick(a, b);
    if (pick != 2.f) return pick;
  }
}

}  // namespace zscrgan

#endif  // ZSCRGAN_ELEMENTWISE_H
