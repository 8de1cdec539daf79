// The CPU reference backend: plain loops over the shared per-element math, GEMMs on oneDNN's
// matmul primitive (onednn_matmul.h), bias and activation fused into it where asked.
// Reductions accumulate in double so this backend is the accurate side of every parity test.
// Compiled once per ISA level into its own namespace (cpu_isa.h); cpu_isa.cc picks one.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <sstream>
#include <vector>

#include "backend/backend.h"
#include "cpu_backend.h"
#include "cpu_topk.h"
#include "core/error.h"
#include "cpu_isa.h"
#include "onednn_matmul.h"

namespace zscrgan {
ZSCRGAN_CPU_ISA_BEGIN

namespace {

// Element-wise loops parallelise only above this many elements: at batch 32 most tensors are
// small enough that waking a second thread costs more than it saves.
constexpr size_t kParallelElements = 1 << 16;
// GEMMs below this many FLOPs run on one thread: below about 1 MFLOP the fork and join cost
// as much as the second thread saves. (Under libgomp's default waiting the threads spin
// between regions; under OMP_WAIT_POLICY=PASSIVE every region waits for a sleeping thread and
// the break-even is several MFLOP. bench/README.md, "Small GEMMs".)
constexpr double kParallelGemmFlops = 1e6;

float scalar_of(const Tensor& t) { return t.data[0]; }

// RMSProp and Adam over n contiguous elements: the loops both paths of each optimizer run.
// The hyper-parameters come by value and the arrays as restrict pointers: through a closure
// they could alias the arrays, and were reloaded every element.
void rmsprop_span(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ ms,
                  size_t n, const RmsPropHyper h) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) rmsprop_tf1_update(&p[i], g[i], &ms[i], h);
}
void adam_span(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
               float* __restrict__ v, size_t n, const float lr_t, const AdamHyper h) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) adam_tf1_update(&p[i], g[i], &m[i], &v[i], lr_t, h);
}
void advance_beta_powers(Tensor beta_powers, const AdamHyper& h) {
  if (!h.advance_beta_powers) return;
  beta_powers.data[0] *= h.beta1;
  beta_powers.data[1] *= h.beta2;
}

// The weight gradient x^T dy of the weight-gradient updates, formed a register block at a time
// and handed to the optimizer's span from there, so the gradient never leaves the core. A block is
// kBlockRows x kBlockCols of the gradient: per step of k, kBlockRows broadcast elements of x
// times kBlockVectors vectors of dy, summed in k order (one FMA each where the level has FMA).
// Both factors are packed first (pack_columns), so the loads are sequential and the rows of x
// and dy, often a multiple of 4 KB apart, do not collide in L1's sets. The accumulators and dy's
// vectors fill the level's vector registers: 16 on AVX2 and below, 32 on AVX-512.
#if ZSCRGAN_CPU_ISA_VARIANT == 2
constexpr int kLanes = 16, kBlockRows = 8;
#elif ZSCRGAN_CPU_ISA_VARIANT == 1
constexpr int kLanes = 8, kBlockRows = 4;
#else
constexpr int kLanes = 4, kBlockRows = 4;
#endif
constexpr int kBlockVectors = 3;
constexpr int kBlockCols = kLanes * kBlockVectors;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef float UnalignedLanes __attribute__((vector_size(kLanes * sizeof(float)), aligned(4), may_alias));
constexpr int kCacheLine = 64;
// The cache lines one block updates, at most: kMaxUpdated arrays (Adam's params, m and v),
// kBlockRows rows, each row's kBlockCols floats on at most (bytes - 1) / kCacheLine + 2 lines.
constexpr int kMaxUpdated = 3;
constexpr int kBlockLines =
    kMaxUpdated * kBlockRows * ((kBlockCols * int(sizeof(float)) - 1) / kCacheLine + 2);

// Columns [c0, c0 + width) of every row of t, as t.rows rows of width (zero past t's last
// column): a panel of dy (width kBlockCols) or a block of x (width kBlockRows).
void pack_columns(const Tensor& t, int c0, int width, float* packed) {
  const int cols = std::min(width, t.cols - c0);
  for (int r = 0; r < t.rows; ++r) {
    const float* src = t.data + static_cast<size_t>(r) * t.ld + c0;
    float* dst = packed + static_cast<size_t>(r) * width;
    int c = 0;
    for (; c < cols; ++c) dst[c] = src[c];
    for (; c < width; ++c) dst[c] = 0.f;
  }
}

// out (kBlockRows x kBlockCols, row-major) = x_block^T dy_panel over k steps. Along the way it
// prefetches next_lines, the lines the next block will update, one a step (any left over after
// the last step), so they arrive while this block computes. The hardware's prefetchers alone
// leave the op slower (bench/README.md): they stop at each 4 KB page, one row of a 1024-wide
// weight.
void weight_grad_block(const float* __restrict__ x_block, const float* __restrict__ dy_panel, int k,
                       const char* const* next_lines, int next_count, float* __restrict__ out) {
  Lanes acc[kBlockRows][kBlockVectors];
  for (int r = 0; r < kBlockRows; ++r)
    for (int v = 0; v < kBlockVectors; ++v) acc[r][v] = Lanes{};
  for (int kk = 0; kk < k; ++kk) {
    if (kk < next_count) __builtin_prefetch(next_lines[kk], 1);
    const UnalignedLanes* dy_row = reinterpret_cast<const UnalignedLanes*>(dy_panel + static_cast<size_t>(kk) * kBlockCols);
    Lanes b[kBlockVectors];
    for (int v = 0; v < kBlockVectors; ++v) b[v] = dy_row[v];
    const float* a = x_block + static_cast<size_t>(kk) * kBlockRows;
    for (int r = 0; r < kBlockRows; ++r)
      for (int v = 0; v < kBlockVectors; ++v) acc[r][v] += a[r] * b[v];
  }
  for (int i = k; i < next_count; ++i) __builtin_prefetch(next_lines[i], 1);
  std::memcpy(out, acc, sizeof acc);
}

// Appends to lines the cache lines of [first, first + count) floats.
int cache_lines_of(const float* first, int count, const char** lines) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(first) / kCacheLine;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(first + count) - 1) / kCacheLine;
  int n = 0;
  for (uintptr_t line = begin; line <= end; ++line) lines[n++] = reinterpret_cast<const char*>(line * kCacheLine);
  return n;
}

// The exp of the loops: portable_expf, which vectorises and gives the bits CUDA gives, except
// at the baseline level, where its fma() calls would make it ~10x libm's expf (elementwise.h).
struct LibmExp {
  float operator()(float x) const { return std::exp(x); }
};
#if ZSCRGAN_CPU_ISA_VARIANT == 0
using LoopExp = LibmExp;
#else
using LoopExp = PortableExp;
#endif

// Runs f(i) for i in [0, n), in parallel only when n is large. A serial branch rather than an
// OpenMP if() clause: libgomp allocates a team even for a region that runs on one thread, and a
// training step must not allocate.
template <typename F>
void parallel_range(size_t n, F&& f) {
  if (n >= kParallelElements) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) f(i);
  } else {
    for (size_t i = 0; i < n; ++i) f(i);
  }
}

// Runs f(begin, end) over [0, n) in blocks (one per thread when n is large), so the body is a
// plain loop the compiler vectorises.
template <typename F>
void parallel_blocks(size_t n, F&& f) {
  if (n < kParallelElements) {
    f(size_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const size_t threads = static_cast<size_t>(omp_get_num_threads());
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    const size_t per = (n + threads - 1) / threads;
    const size_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    f(begin, end);
  }
}

template <typename F>
void for_each_element(const Tensor& shape, F&& f) {  // f(row, col)
  const int cols = shape.cols;
  if (shape.numel() >= kParallelElements) {
    parallel_range(size_t(shape.rows), [&](size_t r) {
      for (int c = 0; c < cols; ++c) f(int(r), c);
    });
  } else {
    for (int r = 0; r < shape.rows; ++r)
      for (int c = 0; c < cols; ++c) f(r, c);
  }
}

// Elements from which a noise fill runs on every thread.
constexpr size_t kParallelNoiseElements = 4096;

#if ZSCRGAN_CPU_ISA_VARIANT == 2
// philox_for_normal's words 0 and 1 for kLanes consecutive elements from `element`, all with
// the same high word, in 32-bit lanes. GCC's own vectorisation of philox_for_normal keeps the
// 32 x 32 -> 64-bit products in 64-bit lanes (vpmullq and shuffles); here each is one unsigned
// 32-bit multiply of the even and one of the odd lanes. That made the AVX-512 fills 7-19%
// faster; at AVX2 the same code was 20-30% slower (bench/README.md, "Noise fills").
typedef uint32_t WordLanes __attribute__((vector_size(kLanes * sizeof(uint32_t))));
typedef uint64_t WordPairLanes __attribute__((vector_size(kLanes * sizeof(uint32_t))));

struct MulHiLoLanes {
  void operator()(uint32_t a, WordLanes b, WordLanes* hi, WordLanes* lo) const {
    // A cast between vector types of one size reinterprets the bits: lane pairs as 64-bit lanes.
    const WordPairLanes pairs = (WordPairLanes)b;
    const WordPairLanes even = (pairs & 0xFFFFFFFFull) * uint64_t(a), odd = (pairs >> 32) * uint64_t(a);
    *hi = (WordLanes)((even >> 32) | (odd & 0xFFFFFFFF00000000ull));
    *lo = (WordLanes)((even & 0xFFFFFFFFull) | (odd << 32));
  }
};

void philox_normal_words_lanes(NoiseStream s, uint64_t element, uint32_t attempt, uint32_t* w0,
                               uint32_t* w1) {
  WordLanes ctr[4];
  for (int j = 0; j < kLanes; ++j) {
    const Philox4 c = philox_counter_for_normal(s, element + j, attempt);
    for (int w = 0; w < 4; ++w) ctr[w][j] = c.v[w];
  }
  philox4x32_10_rounds(ctr, static_cast<uint32_t>(s.seed), static_cast<uint32_t>(s.seed >> 32),
                       MulHiLoLanes{});
  std::memcpy(w0, &ctr[0], sizeof ctr[0]);
  std::memcpy(w1, &ctr[1], sizeof ctr[1]);
}
#endif

// out[c] = from_words(u1, u2) over the first attempt's Philox words (philox_for_normal) of
// elements first + c, c in [0, n).
template <typename F>
void normal_row(NoiseStream s, uint64_t first, int n, float* __restrict__ out, F&& from_words) {
  int c = 0;
#if ZSCRGAN_CPU_ISA_VARIANT == 2
  if ((first >> 32) == ((first + static_cast<uint64_t>(n)) >> 32)) {  // one high word in the row
    alignas(64) uint32_t w0[kLanes], w1[kLanes];
    for (; c + kLanes <= n; c += kLanes) {
      philox_normal_words_lanes(s, first + c, 0u, w0, w1);
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) out[c + j] = from_words(w0[j], w1[j]);
    }
  }
#endif
#pragma omp simd
  for (int j = c; j < n; ++j) {
    const Philox4 r = philox_for_normal(s, first + j, 0u);
    out[j] = from_words(r.v[0], r.v[1]);
  }
}

template <typename F>
void noise_rows(const Tensor& t, F&& f) {  // f(row)
  if (t.numel() >= kParallelNoiseElements && t.rows > 1) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < t.rows; ++r) f(r);
  } else {
    for (int r = 0; r < t.rows; ++r) f(r);
  }
}

inline float& at(const Tensor& t, int r, int c) { return t.data[static_cast<size_t>(r) * t.ld + c]; }

// Runs f(row) for every row, in parallel when the tensor is large.
template <typename F>
void rows_of(const Tensor& t, F&& f) {
  if (t.numel() >= kParallelElements)
    parallel_range(size_t(t.rows), [&](size_t r) { f(int(r)); });
  else
    for (int r = 0; r < t.rows; ++r) f(r);
}

// Calls f with the activation as a compile-time constant, so each loop specialises and
// vectorises instead of branching on the activation per element.
template <typename F>
void with_act(Act act, F&& f) {
  switch (act) {
    case Act::LeakyRelu: return f(std::integral_constant<Act, Act::LeakyRelu>{});
    case Act::Relu: return f(std::integral_constant<Act, Act::Relu>{});
    case Act::None: return f(std::integral_constant<Act, Act::None>{});
  }
}

// GEMMs with one output column (n = 1: a layer of width 1, as the critic's output, and that
// layer's weight gradient) or an inner dimension of 1 (k = 1: the gradient through such a
// layer), up to kSkinnyGemmMaxFlops: a few thousand multiply-adds, of which a oneDNN call's
// fixed cost (2-7 us a call in a round, bench/README.md "Skinny GEMMs") was most of the time.
// Plain loops on the calling thread, in an order fixed by the shape. Calls with both alpha
// and a bias stay on oneDNN, whose order of the two these loops do not restate.
constexpr double kSkinnyGemmMaxFlops = 1e6;
constexpr int kSkinnyMaxDim = 4096;  // m, n and k at most this: the stack buffers' length
constexpr int kDotLanes = 16;        // a dot product's partial sums, added in lane order

bool skinny_gemm_fits(const GemmCall& g) {
  return (g.n == 1 || g.k == 1) && 2.0 * g.m * g.n * g.k <= kSkinnyGemmMaxFlops &&
         std::max({g.m, g.n, g.k}) <= kSkinnyMaxDim && (g.alpha == 1.f || g.bias == nullptr);
}

float op_a(const GemmCall& g, int i, int kk) {
  return g.trans_a ? g.a[static_cast<int64_t>(kk) * g.lda + i] : g.a[static_cast<int64_t>(i) * g.lda + kk];
}
float op_b(const GemmCall& g, int kk, int j) {
  return g.trans_b ? g.b[static_cast<int64_t>(j) * g.ldb + kk] : g.b[static_cast<int64_t>(kk) * g.ldb + j];
}

// c[j] = act(alpha s[j] + bias[j] + beta c[j]) for j < n: the primitive's post-ops, in its
// order, specialised by which terms are present so that the loop vectorises.
template <Act kAct, bool kBias, bool kBeta>
void skinny_epilogue(float* __restrict__ c, const float* __restrict__ s, int n, float alpha,
                     const float* __restrict__ bias, float beta) {
#pragma omp simd
  for (int j = 0; j < n; ++j) {
    float v = alpha * s[j];
    if constexpr (kBias) v += bias[j];
    if constexpr (kBeta) v += beta * c[j];
    c[j] = act_forward(v, kAct);
  }
}
using SkinnyEpilogue = void (*)(float*, const float*, int, float, const float*, float);
SkinnyEpilogue skinny_epilogue_for(const GemmCall& g) {
  SkinnyEpilogue f = nullptr;
  const bool bias = g.bias != nullptr, beta = g.beta != 0.f;
  with_act(g.act, [&](auto a) {
    constexpr Act kAct = decltype(a)::value;
    f = bias ? (beta ? skinny_epilogue<kAct, true, true> : skinny_epilogue<kAct, true, false>)
             : (beta ? skinny_epilogue<kAct, false, true> : skinny_epilogue<kAct, false, false>);
  });
  return f;
}

void skinny_gemm(const GemmCall& g) {
  const SkinnyEpilogue epilogue = skinny_epilogue_for(g);
  const int m = g.m, n = g.n, k = g.k;
  alignas(64) float b_line[kSkinnyMaxDim];  // op(B)'s column (n = 1) or row (k = 1), contiguous
  alignas(64) float sums[kSkinnyMaxDim];
  if (n == 1) {
    for (int kk = 0; kk < k; ++kk) b_line[kk] = op_b(g, kk, 0);
    if (!g.trans_a) {  // row i of A times b_line: kDotLanes partial sums
      for (int i = 0; i < m; ++i) {
        const float* __restrict__ a_row = g.a + static_cast<int64_t>(i) * g.lda;
        float lane[kDotLanes] = {};
        int kk = 0;
        for (; kk + kDotLanes <= k; kk += kDotLanes) {
#pragma omp simd
          for (int l = 0; l < kDotLanes; ++l) lane[l] += a_row[kk + l] * b_line[kk + l];
        }
        for (int l = 0; kk + l < k; ++l) lane[l] += a_row[kk + l] * b_line[kk + l];
        float sum = lane[0];
        for (int l = 1; l < kDotLanes; ++l) sum += lane[l];
        sums[i] = sum;
      }
    } else {  // A^T b_line: the rows of A, scaled by b_line, summed in k order
      std::fill(sums, sums + m, 0.f);
      for (int kk = 0; kk < k; ++kk) {
        const float* __restrict__ a_row = g.a + static_cast<int64_t>(kk) * g.lda;
        const float bk = b_line[kk];
#pragma omp simd
        for (int i = 0; i < m; ++i) sums[i] += a_row[i] * bk;
      }
    }
    for (int i = 0; i < m; ++i) epilogue(g.c + static_cast<int64_t>(i) * g.ldc, sums + i, 1, g.alpha, g.bias, g.beta);
    return;
  }
  // k = 1: row i of C from op(A)[i][0] times op(B)'s row.
  for (int j = 0; j < n; ++j) b_line[j] = op_b(g, 0, j);
  for (int i = 0; i < m; ++i) {
    const float ai = op_a(g, i, 0);
#pragma omp simd
    for (int j = 0; j < n; ++j) sums[j] = ai * b_line[j];
    epilogue(g.c + static_cast<int64_t>(i) * g.ldc, sums, n, g.alpha, g.bias, g.beta);
  }
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() : threads_(omp_get_max_threads()), matmul_(onednn_matmul()) {
    const std::string warning = onednn_slow_path_warning();
    if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
  }
  Device device() const override { return Device::CPU; }
  std::string description() const override {
    std::ostringstream os;
    os << "cpu (" << onednn_summary() << ", loops " << ZSCRGAN_CPU_ISA_NAME << ", " << threads_
       << " threads)";
    return os.str();
  }

 protected:
  void* do_allocate(size_t bytes) override {
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (p == nullptr) fail("out of host memory: could not allocate ", bytes, " bytes");
    return p;
  }
  void do_deallocate(void* p) override { std::free(p); }
  void do_upload(Tensor dst, const float* host) override {
    for (int r = 0; r < dst.rows; ++r)
      std::memcpy(&at(dst, r, 0), host + static_cast<size_t>(r) * dst.cols, sizeof(float) * dst.cols);
  }
  void do_download(const Tensor& src, float* host) override {
    for (int r = 0; r < src.rows; ++r)
      std::memcpy(host + static_cast<size_t>(r) * src.cols, &at(src, r, 0), sizeof(float) * src.cols);
  }
  void do_upload_bytes(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  void do_download_bytes(void* host, const void* src, size_t bytes) override { std::memcpy(host, src, bytes); }
  void do_synchronize() override {}

  void do_fill(Tensor t, float value) override {
    for_each_element(t, [&](int r, int c) { at(t, r, c) = value; });
  }
  void do_copy(Tensor dst, const Tensor& src) override {
    for_each_element(dst, [&](int r, int c) { at(dst, r, c) = at(src, r, c); });
  }
  void do_axpy(Tensor y, float alpha, const Tensor& x) override {
    for_each_element(y, [&](int r, int c) { at(y, r, c) += alpha * at(x, r, c); });
  }
  void do_gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) override {
    const int32_t* idx = resolve_indices(rows);
    for (int r = 0; r < dst.rows; ++r) {
      // The indices are read here, so only here can they be checked (CUDA: a fault record).
      ZS_CHECK(idx[r] >= 0 && idx[r] < src.rows, "gather_rows: output row ", r, " reads row ",
               idx[r], " of a ", src.rows, "-row table");
      std::memcpy(&at(dst, r, 0), &at(src, idx[r], 0), sizeof(float) * dst.cols);
    }
  }

  void do_gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
               Tensor c) override {
    run_gemm(ta, tb, alpha, a, b, beta, c, nullptr, Act::None);
  }
  void do_gemm_bias_act(bool ta, bool tb, const Tensor& a, const Tensor& b, float beta, Tensor c,
                        const Tensor& bias, Act act) override {
    run_gemm(ta, tb, 1.f, a, b, beta, c, bias.data, act);
  }

  void do_bias_act_forward(Tensor y, const Tensor& bias, Act act) override {
    with_act(act, [&](auto a) {
      constexpr Act kAct = decltype(a)::value;
      const float* __restrict__ b = bias.data;
      const int cols = y.cols;
      rows_of(y, [&](int r) {
        float* __restrict__ yr = &at(y, r, 0);
#pragma omp simd
        for (int c = 0; c < cols; ++c) yr[c] = act_forward(yr[c] + b[c], kAct);
      });
    });
  }
  void do_bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre, Tensor d_bias,
                            Act act, GradWrite pre_write, GradWrite bias_write) override {
    const bool store_pre = pre_write == GradWrite::Overwrite;
    const bool store_bias = bias_write == GradWrite::Overwrite;
    with_act(act, [&](auto a) {
      constexpr Act kAct = decltype(a)::value;
      const int cols = y.cols;
      if (d_bias.empty()) {
        if (d_pre.empty()) return;
        rows_of(y, [&](int r) {
          const float* __restrict__ yr = &at(y, r, 0);
          const float* __restrict__ gr = &at(dy, r, 0);
          float* __restrict__ dr = &at(d_pre, r, 0);
          if (store_pre) {
#pragma omp simd
            for (int c = 0; c < cols; ++c) dr[c] = act_backward(gr[c], yr[c], kAct);
          } else {
#pragma omp simd
            for (int c = 0; c < cols; ++c) dr[c] += act_backward(gr[c], yr[c], kAct);
          }
        });
        return;
      }
      // One pass: g = dy * act'(y) goes to d_pre and to the column sums (in double, each
      // column summed in row order), a block of columns at a time; blocks are independent,
      // so they run in parallel on large tensors with the same sums.
      constexpr int kBlock = 256;
      const int n_blocks = (cols + kBlock - 1) / kBlock;
      const bool with_pre = !d_pre.empty();
      auto block = [&](size_t bi) {
        const int c0 = static_cast<int>(bi) * kBlock;
        const int n = std::min(kBlock, cols - c0);
        double acc[kBlock] = {};
        for (int r = 0; r < y.rows; ++r) {
          const float* __restrict__ yr = &at(y, r, c0);
          const float* __restrict__ gr = &at(dy, r, c0);
          if (with_pre) {
            float* __restrict__ dr = &at(d_pre, r, c0);
            if (store_pre) {
#pragma omp simd
              for (int c = 0; c < n; ++c) {
                const float g = act_backward(gr[c], yr[c], kAct);
                dr[c] = g;
                acc[c] += g;
              }
            } else {
#pragma omp simd
              for (int c = 0; c < n; ++c) {
                const float g = act_backward(gr[c], yr[c], kAct);
                dr[c] += g;
                acc[c] += g;
              }
            }
          } else {
#pragma omp simd
            for (int c = 0; c < n; ++c) acc[c] += act_backward(gr[c], yr[c], kAct);
          }
        }
        float* __restrict__ db = d_bias.data + c0;
        if (store_bias)
          for (int c = 0; c < n; ++c) db[c] = static_cast<float>(acc[c]);
        else
          for (int c = 0; c < n; ++c) db[c] += static_cast<float>(acc[c]);
      };
      if (y.numel() >= kParallelElements && n_blocks > 1) {
#pragma omp parallel for schedule(static)
        for (int bi = 0; bi < n_blocks; ++bi) block(static_cast<size_t>(bi));
      } else {
        for (int bi = 0; bi < n_blocks; ++bi) block(static_cast<size_t>(bi));
      }
    });
  }

  // Noise costs nanoseconds per element even vectorised (Philox, log, cos), so it splits over
  // the threads from far fewer elements than the memory-bound loops; each element is a pure
  // function of (stream, index), so neither the split nor the vector width changes a bit.
  void do_fill_normal(Tensor t, NoiseStream s) override {
    const NoiseStream rs = resolve_stream(s);
    const int cols = t.cols;
    noise_rows(t, [&](int r) {
      normal_row(rs, static_cast<uint64_t>(r) * cols, cols, &at(t, r, 0), [](uint32_t u1, uint32_t u2) {
        float n0, n1;
        box_muller_pair(u1, u2, &n0, &n1);
        return n0;
      });
    });
  }
  // The first attempt of every element in one vectorised pass; the ~0.2% whose two candidates
  // both fall outside (-2, 2) come out as truncated_pick's marker 2 and are then drawn by the
  // scalar function itself, which repeats attempt 0 and goes on.
  void do_fill_truncated_normal(Tensor t, NoiseStream s) override {
    const NoiseStream rs = resolve_stream(s);
    const int cols = t.cols;
    noise_rows(t, [&](int r) {
      float* __restrict__ out = &at(t, r, 0);
      const uint64_t first = static_cast<uint64_t>(r) * cols;
      normal_row(rs, first, cols, out, [](uint32_t u1, uint32_t u2) {
        float a, b;
        box_muller_pair(u1, u2, &a, &b);
        return truncated_pick(a, b);
      });
      for (int c = 0; c < cols; ++c)
        if (out[c] == 2.f) out[c] = philox_truncated_normal(rs, first + c);
    });
  }

  // Row loops, which vectorise at every level but baseline (LoopExp).
  void do_reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) override {
    const int e = c.cols;
    rows_of(c, [&](int r) {
      const float* __restrict__ mu = &at(h, r, 0);
      const float* __restrict__ log_sigma = &at(h, r, e);
      const float* __restrict__ noise = &at(eps, r, 0);
      float* __restrict__ out = &at(c, r, 0);
#pragma omp simd
      for (int j = 0; j < e; ++j) out[j] = mu[j] + LoopExp()(log_sigma[j]) * noise[j];
    });
  }
  void do_reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc, Tensor dh) override {
    const int e = dc.cols;
    rows_of(dc, [&](int r) {
      const float* __restrict__ log_sigma = &at(h, r, e);
      const float* __restrict__ noise = &at(eps, r, 0);
      const float* __restrict__ g = &at(dc, r, 0);
      float* __restrict__ d_mu = &at(dh, r, 0);
      float* __restrict__ d_log_sigma = &at(dh, r, e);
#pragma omp simd
      for (int j = 0; j < e; ++j) {
        d_mu[j] += g[j];
        d_log_sigma[j] += g[j] * LoopExp()(log_sigma[j]) * noise[j];
      }
    });
  }

  // The mean in double over kKlLanes partial sums (element j of a row into lane j % kKlLanes),
  // added in a fixed order at the end: the same bits at every vector width, with the terms
  // formed a chunk at a time by a loop that vectorises (as above).
  void do_kl_forward(const Tensor& h, Tensor out) override {
    constexpr int kKlLanes = 8, kChunk = 256;
    const int e = h.cols / 2;
    double lanes[kKlLanes] = {};
    float terms[kChunk];
    for (int r = 0; r < h.rows; ++r)
      for (int j0 = 0; j0 < e; j0 += kChunk) {
        const int n = std::min(kChunk, e - j0);
        const float* __restrict__ mu = &at(h, r, j0);
        const float* __restrict__ log_sigma = &at(h, r, e + j0);
#pragma omp simd
        for (int j = 0; j < n; ++j) terms[j] = kl_element(mu[j], log_sigma[j], LoopExp());
        int j = 0;
        for (; j + kKlLanes <= n; j += kKlLanes)
          for (int l = 0; l < kKlLanes; ++l) lanes[l] += terms[j + l];
        for (; j < n; ++j) lanes[j % kKlLanes] += terms[j];
      }
    const double s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                     ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    out.data[0] = static_cast<float>(s / (static_cast<double>(h.rows) * e));
  }
  void do_kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) override {
    const int e = h.cols / 2;
    const float scale = scalar_of(d_out) / (static_cast<float>(h.rows) * e);
    rows_of(h, [&](int r) {
      const float* __restrict__ mu = &at(h, r, 0);
      const float* __restrict__ log_sigma = &at(h, r, e);
      float* __restrict__ d_mu = &at(dh, r, 0);
      float* __restrict__ d_log_sigma = &at(dh, r, e);
#pragma omp simd
      for (int j = 0; j < e; ++j) {
        float dmu, dls;
        kl_element_grad(mu[j], log_sigma[j], &dmu, &dls, LoopExp());
        d_mu[j] += scale * dmu;
        d_log_sigma[j] += scale * dls;
      }
    });
  }

  void do_l1_forward(const Tensor& x, const Tensor& v, Tensor out) override {
    double s = 0;
    for (int r = 0; r < x.rows; ++r)
      for (int c = 0; c < x.cols; ++c) s += std::fabs(at(x, r, c) - at(v, r, c));
    out.data[0] = static_cast<float>(s / x.rows);
  }
  void do_l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                      Tensor dv) override {
    const float scale = scalar_of(d_out) / static_cast<float>(x.rows);
    const auto g = [&](int r, int c) { return scale * sign_tf(at(x, r, c) - at(v, r, c)); };
    // A loop for each case, with no test inside: GCC 14 left the single loop with
    // `if (!dx.empty())` and `if (!dv.empty())` in its body scalar (12-28x slower).
    if (!dx.empty() && !dv.empty()) {
      for_each_element(x, [&](int r, int c) {
        const float gx = g(r, c);
        at(dx, r, c) += gx;
        at(dv, r, c) -= gx;
      });
    } else if (!dx.empty()) {
      for_each_element(x, [&](int r, int c) { at(dx, r, c) += g(r, c); });
    } else if (!dv.empty()) {
      for_each_element(x, [&](int r, int c) { at(dv, r, c) -= g(r, c); });
    }
  }

  void do_mean_forward(const Tensor& x, Tensor out) override {
    double s = 0;
    for (int r = 0; r < x.rows; ++r)
      for (int c = 0; c < x.cols; ++c) s += at(x, r, c);
    out.data[0] = static_cast<float>(s / static_cast<double>(x.numel()));
  }
  void do_mean_backward(const Tensor& d_out, Tensor dx) override {
    const float g = scalar_of(d_out) / static_cast<float>(dx.numel());
    for_each_element(dx, [&](int r, int c) { at(dx, r, c) += g; });
  }

  void do_cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out) override {
    double total = 0;
    for (int r = 0; r < a.rows; ++r) {
      float saa = 0, sbb = 0, sab = 0;
      row_dots(a, b, r, &saa, &sbb, &sab);
      total += sab * l2_inv_norm(saa) * l2_inv_norm(sbb);
    }
    out.data[0] = static_cast<float>(total / a.rows);
  }
  void do_cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out, Tensor da,
                               Tensor db) override {
    const float g = scalar_of(d_out) / static_cast<float>(a.rows);
    for (int r = 0; r < a.rows; ++r) {
      float saa = 0, sbb = 0, sab = 0;
      row_dots(a, b, r, &saa, &sbb, &sab);
      const float ia = l2_inv_norm(saa), ib = l2_inv_norm(sbb);
      const float cosv = sab * ia * ib;
      // d cos / d a = ia (b_hat - cos a_hat); the second term vanishes where the norm floor holds.
      const float ka = l2_floor_active(saa) ? 0.f : cosv * ia;
      const float kb = l2_floor_active(sbb) ? 0.f : cosv * ib;
      // A loop per gradient (GCC 14, as in l1_backward); a row's a and b stay in L1 between them.
      if (!da.empty())
        for (int c = 0; c < a.cols; ++c)
          at(da, r, c) += g * ia * (at(b, r, c) * ib - ka * at(a, r, c));
      if (!db.empty())
        for (int c = 0; c < a.cols; ++c)
          at(db, r, c) += g * ib * (at(a, r, c) * ia - kb * at(b, r, c));
    }
  }

  void do_softplus_forward(const Tensor& x, Tensor out) override {
    for_each_element(x, [&](int r, int c) { at(out, r, c) = softplus_published(at(x, r, c)); });
  }
  void do_softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) override {
    for_each_element(x, [&](int r, int c) { at(dx, r, c) += at(d_out, r, c) * softplus_grad(at(x, r, c)); });
  }

  void do_combine_forward(const ScalarTerms& terms, Tensor out) override {
    float s = terms.constant;
    for (int i = 0; i < terms.n; ++i) s += terms.weight[i] * terms.value[i][0];
    out.data[0] = s;
  }
  void do_combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) override {
    const float g = scalar_of(d_out);
    for (int i = 0; i < grads.n; ++i)
      if (grads.grad[i] != nullptr) grads.grad[i][0] += grads.weight[i] * g;
  }

  void do_rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                         const RmsPropHyper& h) override {
    float* const p = params.data;
    const float* const g = grads.data;
    float* const ms = mean_square.data;
    const RmsPropHyper hyper = h;
    parallel_blocks(params.numel(), [=](size_t begin, size_t end) {
      rmsprop_span(p + begin, g + begin, ms + begin, end - begin, hyper);
    });
  }
  void do_weight_grad_rmsprop_update(const Tensor& x, const Tensor& dy, Tensor params,
                                     Tensor grads, Tensor mean_square,
                                     const RmsPropHyper& h) override {
    if (!blocked_update(params, x)) {
      Backend::do_weight_grad_rmsprop_update(x, dy, params, grads, mean_square, h);
      return;
    }
    float* const p = params.data;
    float* const ms = mean_square.data;
    const RmsPropHyper hyper = h;
    float* const updated[] = {p, ms};
    update_from_product(x, dy, grads, updated, [=](size_t at, const float* g, int cols) {
      rmsprop_span(p + at, g, ms + at, cols, hyper);
    });
  }
  void do_adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor beta_powers,
                      const AdamHyper& h) override {
    const float lr_t = adam_tf1_lr_t(h, beta_powers.data[0], beta_powers.data[1]);
    float* const p = params.data;
    const float* const g = grads.data;
    float* const mm = m.data;
    float* const vv = v.data;
    const AdamHyper hyper = h;
    parallel_blocks(params.numel(), [=](size_t begin, size_t end) {
      adam_span(p + begin, g + begin, mm + begin, vv + begin, end - begin, lr_t, hyper);
    });
    advance_beta_powers(beta_powers, h);
  }
  void do_weight_grad_adam_update(const Tensor& x, const Tensor& dy, Tensor params, Tensor grads,
                                  Tensor m, Tensor v, Tensor beta_powers,
                                  const AdamHyper& h) override {
    if (!blocked_update(params, x)) {
      Backend::do_weight_grad_adam_update(x, dy, params, grads, m, v, beta_powers, h);
      return;
    }
    const float lr_t = adam_tf1_lr_t(h, beta_powers.data[0], beta_powers.data[1]);
    float* const p = params.data;
    float* const mm = m.data;
    float* const vv = v.data;
    const AdamHyper hyper = h;
    float* const updated[] = {p, mm, vv};
    update_from_product(x, dy, grads, updated, [=](size_t at, const float* g, int cols) {
      adam_span(p + at, g, mm + at, vv + at, cols, lr_t, hyper);
    });
    advance_beta_powers(beta_powers, h);
  }

  void do_increment_counter(int64_t* counter) override { ++*counter; }
  void do_store_scalar(const Tensor& value, Tensor slots, int64_t base, const int64_t* counter,
                       int64_t stride) override {
    const int64_t at = base + (counter != nullptr ? *counter * stride : 0);
    // The counter is read here, so only here can the slot be checked (CUDA: a fault record).
    ZS_CHECK(at >= 0 && at < static_cast<int64_t>(slots.numel()), "store_scalar: slot ", at,
             " of ", slots.numel());
    slots.data[at] = value.data[0];
  }

  void do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k, int64_t index_offset,
                      int64_t* out_index, float* out_score) override {
    cpu_topk_cosine(queries.data, queries.rows, queries.ld, gallery.data, gallery.rows,
                    gallery.ld, queries.cols, k, index_offset, out_index, out_score);
  }

 private:
  // Whether a weight's update from x^T dy takes the blocked path (update_from_product).
  static bool blocked_update(const Tensor& params, const Tensor& x) {
    return params.numel() >= kCpuBlockedUpdateMinParams && x.rows > 0;
  }
  // The blocked path of the weight-gradient updates, where the gradient never goes to memory:
  // each thread forms register blocks of x^T dy (weight_grad_block) and hands each row of a
  // block to span(at, g, cols), the optimizer's loop over the weight's elements
  // [at, at + cols), while the lines of the next block in the `updated` arrays (the
  // parameters and optimizer state, laid out as the weight) are being prefetched. So the
  // update's traffic streams in behind the multiply-adds instead of after them. dy is packed
  // once by both threads; each thread takes a contiguous range of blocks, row block by row
  // block. This replaced one-thread oneDNN GEMMs on L2-sized tiles, each followed by the update
  // of the tile, which left its traffic after the multiply-adds (bench/README.md, "Weight
  // gradient and RMSProp in register blocks"). `grads` is only the shape of the product.
  template <int NUpdated, typename Span>
  void update_from_product(const Tensor& x, const Tensor& dy, const Tensor& grads,
                           float* const (&updated)[NUpdated], Span span) {
    static_assert(NUpdated <= kMaxUpdated, "next_lines holds the lines of kMaxUpdated arrays");
    const int m = grads.rows, n = grads.cols, k = x.rows;
    const int panels = (n + kBlockCols - 1) / kBlockCols, row_blocks = (m + kBlockRows - 1) / kBlockRows;
    const int blocks = panels * row_blocks;
    const size_t panel_floats = static_cast<size_t>(k) * kBlockCols;
    const size_t x_block_floats = static_cast<size_t>(k) * kBlockRows;
    const size_t floats = panel_floats * panels + x_block_floats * threads_;
    if (update_scratch_floats_ < floats) {  // grows in the first round only
      update_scratch_.reset(new float[floats]);
      update_scratch_floats_ = floats;
    }
    float* const packed_dy = update_scratch_.get();

    const GemmCall product = gemm_call(true, false, 1.f, x, dy, 0.f, grads, nullptr, Act::None);
    counted_as_gemm(product, gemm_threads(2.0 * m * n * k), [&] {
#pragma omp parallel num_threads(threads_)
      {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int p = t; p < panels; p += nt) pack_columns(dy, p * kBlockCols, kBlockCols, packed_dy + p * panel_floats);
#pragma omp barrier
        float* const x_block = packed_dy + panel_floats * panels + x_block_floats * t;
        alignas(64) float out[kBlockRows * kBlockCols];
        const char* next_lines[kBlockLines];
        const int per = (blocks + nt - 1) / nt;
        const int first = std::min(blocks, t * per), last = std::min(blocks, first + per);
        struct Block {
          int i0, j0, rows, cols;  // its first row and column of the weight, and how many
        };
        auto block = [&](int b) {
          const int i0 = b / panels * kBlockRows, j0 = b % panels * kBlockCols;
          return Block{i0, j0, std::min(kBlockRows, m - i0), std::min(kBlockCols, n - j0)};
        };
        for (int b = first; b < last; ++b) {
          const Block here = block(b);
          if (b == first || here.j0 == 0) pack_columns(x, here.i0, kBlockRows, x_block);
          int next_count = 0;  // the lines of the updated arrays the next block updates
          if (b + 1 < last) {
            const Block next = block(b + 1);
            for (int r = 0; r < next.rows; ++r) {
              const size_t at = static_cast<size_t>(next.i0 + r) * n + next.j0;
              for (int a = 0; a < NUpdated; ++a)
                next_count += cache_lines_of(updated[a] + at, next.cols, next_lines + next_count);
            }
          }
          weight_grad_block(x_block, packed_dy + b % panels * panel_floats, k, next_lines, next_count, out);
          for (int r = 0; r < here.rows; ++r)
            span(static_cast<size_t>(here.i0 + r) * n + here.j0, out + r * kBlockCols, here.cols);
        }
      }
    });
  }
  // Runs f, which computes what the GEMM `call` would (and more), and counts it in a running
  // census as that GEMM on `threads` threads, so the floor holds the GEMM on oneDNN.
  template <typename F>
  void counted_as_gemm(const GemmCall& call, int threads, F&& f) {
    if (!matmul_.census_running()) {
      f();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    f();
    matmul_.count_in_census(call, threads, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  // C = act(alpha op(A) op(B) + bias + beta C); bias may be null.
  void run_gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
                Tensor c, const float* bias, Act act) {
    const int m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
    const int n = tb ? b.rows : b.cols;
    if (m == 0 || n == 0) return;
    if (k == 0) {  // C = act(bias + beta C), as the primitive would compute it
      // With beta 0, C is written without being read (BLAS's rule: a NaN left in C does not
      // survive), which the tape's first writers rely on.
      for_each_element(c, [&](int r, int col) {
        const float kept = beta != 0.f ? beta * at(c, r, col) : 0.f;
        at(c, r, col) = act_forward((bias ? bias[col] : 0.f) + kept, act);
      });
      return;
    }
    const GemmCall call = gemm_call(ta, tb, alpha, a, b, beta, c, bias, act);
    if (skinny_gemm_fits(call)) {
      counted_as_gemm(call, 1, [&] { skinny_gemm(call); });
      return;
    }
    matmul_.run(call, gemm_threads(2.0 * m * n * k));
  }
  // C = act(alpha op(A) op(B) + bias + beta C) as oneDNN's call describes it.
  static GemmCall gemm_call(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b,
                            float beta, const Tensor& c, const float* bias, Act act) {
    GemmCall call;
    call.trans_a = ta;
    call.trans_b = tb;
    call.m = ta ? a.cols : a.rows;
    call.n = tb ? b.rows : b.cols;
    call.k = ta ? a.rows : a.cols;
    call.alpha = alpha;
    call.a = a.data;
    call.lda = a.ld;
    call.b = b.data;
    call.ldb = b.ld;
    call.beta = beta;
    call.c = c.data;
    call.ldc = c.ld;
    call.bias = bias;
    call.act = act;
    return call;
  }
  int gemm_threads(double flops) const { return flops < kParallelGemmFlops ? 1 : threads_; }

  const int threads_;  // OpenMP's thread count at start-up
  OnednnMatmul& matmul_;
  // update_from_product's packed dy, then one packed block of x per thread.
  std::unique_ptr<float[]> update_scratch_;
  size_t update_scratch_floats_ = 0;
  static void row_dots(const Tensor& a, const Tensor& b, int r, float* saa, float* sbb, float* sab) {
    double aa = 0, bb = 0, ab = 0;
    for (int c = 0; c < a.cols; ++c) {
      const double av = at(a, r, c), bv = at(b, r, c);
      aa += av * av;
      bb += bv * bv;
      ab += av * bv;
    }
    *saa = static_cast<float>(aa);
    *sbb = static_cast<float>(bb);
    *sab = static_cast<float>(ab);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

ZSCRGAN_CPU_ISA_END
}  // namespace zscrgan
