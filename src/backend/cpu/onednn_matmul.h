// The CPU backend's GEMMs on oneDNN's matmul primitive (internal to src/).
//
// One primitive per shape: the first call with a given (transposes, sizes, strides, alpha,
// beta, bias, activation, threads) creates it, later calls find it in the cache, so a training
// step's GEMMs are created during the first round and never again. Scratchpads are
// user-managed: one buffer owned here, grown only when a new primitive needs more, so
// executing a cached primitive allocates nothing of ours. Each primitive is a pure function of
// its inputs for a fixed shape, thread count and machine (no atomics in oneDNN's f32 matmul),
// which keeps CPU runs bitwise reproducible.
#ifndef ZSCRGAN_ONEDNN_MATMUL_H
#define ZSCRGAN_ONEDNN_MATMUL_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/elementwise.h"

namespace zscrgan {

// Row-major C (m x n, row stride ldc) = act(alpha op(A) op(B) + bias + beta C).
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  float alpha = 1.f;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.f;
  float* c = nullptr;
  int64_t ldc = 0;
  const float* bias = nullptr;  // 1 x n, or null
  Act act = Act::None;
};

class OnednnMatmul {
 public:
  // A GEMM shape's primitive made for one thread, for callers that run several GEMMs at once,
  // one per thread (the CPU top-k runs one per gallery tile). run() executes it on the calling
  // thread alone and may be called from any number of threads concurrently, each passing its
  // own scratchpad of scratch_bytes(); it allocates nothing but oneDNN's argument handles.
  class SingleThreadGemm {
   public:
    SingleThreadGemm();
    ~SingleThreadGemm();
    SingleThreadGemm(const SingleThreadGemm&) = delete;
    SingleThreadGemm& operator=(const SingleThreadGemm&) = delete;
    size_t scratch_bytes() const;
    // call: the shape this was made for, with its buffers. scratch: scratch_bytes() bytes.
    // Makes its oneDNN argument handles for the call (they allocate).
    void run(const GemmCall& call, void* scratch) const;

   private:
    friend class OnednnMatmul;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };
  // The cached single-thread primitive of a call's shape (its pointers are not kept); made on
  // first use. Not thread-safe, like run(): get the primitives before starting the threads.
  const SingleThreadGemm& single_thread_gemm(const GemmCall& shape);

  OnednnMatmul();
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  // Runs the call on `threads` OpenMP threads (0: omp_get_max_threads()). Not thread-safe:
  // one caller at a time.
  void run(const GemmCall& call, int threads = 0);

  // The census: while on, every run() counts its call's shape (the call's pointers are not
  // kept) and the seconds its executions took. For benchmarks: the census allocates.
  // stop_census lists the shapes in one fixed order (by shape and threads), so censuses of the
  // same calls line up entry by entry.
  struct ShapeCount {
    GemmCall shape;  // pointers null
    bool has_bias = false;
    int threads = 0;
    int64_t count = 0;
    double seconds = 0;  // spent executing these calls while the census was on
  };
  void start_census();
  std::vector<ShapeCount> stop_census();
  bool census_running() const;
  // Counts a GEMM of this shape on `threads` threads that took `seconds`, for work that forms
  // the shape's product without run() (the CPU backend's weight_grad_rmsprop_update, in
  // register blocks): the floor then holds that GEMM on oneDNN. Nothing happens while the
  // census is off.
  void count_in_census(const GemmCall& shape, int threads, double seconds);

  // Primitives created so far (the cache's size).
  size_t primitives() const;
  // The implementation oneDNN picked for a call's shape, e.g. "brg:avx512_core".
  std::string implementation(const GemmCall& call, int threads = 0);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The process-wide instance (oneDNN's engine and stream are created once).
OnednnMatmul& onednn_matmul();

// "oneDNN 2.6.3, avx512_core": the library version and the ISA its kernels dispatch to.
std::string onednn_summary();
// "" when oneDNN's kernels use the best vector ISA this CPU has (AVX2 or AVX-512 class);
// otherwise one line saying which kernels run, what the CPU has, and what to do.
std::string onednn_slow_path_warning();

}  // namespace zscrgan

#endif  // ZSCRGAN_ONEDNN_MATMUL_H
