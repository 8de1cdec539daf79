// The CUDA backend: the Backend interface on one GPU, one stream, one cuBLAS handle.
// Everything a step does is queued on stream() without host synchronisation or allocation, so
// a step can be captured as a CUDA graph (begin_capture / end_capture) and replayed.
// CUDA-specific extras (the stream, the device's figures) are here for the benchmarks and
// tests; the rest of the library sees only Backend.
#ifndef ZSCRGAN_KERNELS_CUDA_BACKEND_H
#define ZSCRGAN_KERNELS_CUDA_BACKEND_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace zscrgan {

namespace cuda_detail {
struct KernelContext;
struct KernelFaultRecord;
}

class CudaBackend final : public Backend {
 public:
  // On the current CUDA device. Throws Error when the device cannot be set up. tf32: training
  // GEMMs in TF32 on the tensor cores (about 10 mantissa bits per product) rather than in full
  // FP32 (the default); retrieval's similarity GEMMs stay FP32 either way.
  explicit CudaBackend(bool tf32 = false);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::CUDA; }
  std::string description() const override;

  // A captured program replays on this backend's stream and must not outlive the backend.
  bool can_capture() const override { return true; }
  void begin_capture() override;
  std::unique_ptr<CapturedProgram> end_capture() override;
  void abort_capture() noexcept override;
  int max_top_k() const override;

  // CUDA events around `work` on the stream; cold_cache first writes a 256 MiB buffer (more
  // than any L2 so far), allocated on first use and kept.
  double time_seconds(const std::function<void()>& work, bool cold_cache) override;

  // ---- CUDA-specific ----
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  // Whether training GEMMs run in TF32 (a construction option; see the constructor).
  bool tf32() const { return tf32_; }
  int sm_count() const { return sm_count_; }
  const std::string& device_name() const { return name_; }

 protected:
  void* do_allocate(size_t bytes) override;
  void do_deallocate(void* p) override;
  void do_upload(Tensor dst, const float* host) override;
  void do_download(const Tensor& src, float* host) override;
  void do_upload_bytes(void* dst, const void* host, size_t bytes) override;
  void do_download_bytes(void* host, const void* src, size_t bytes) override;
  void do_synchronize() override;

  void do_fill(Tensor t, float value) override;
  void do_copy(Tensor dst, const Tensor& src) override;
  void do_axpy(Tensor y, float alpha, const Tensor& x) override;
  void do_gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) override;
  void do_gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b,
               float beta, Tensor c) override;

  void do_bias_act_forward(Tensor y, const Tensor& bias, Act act) override;
  void do_bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre, Tensor d_bias,
                            Act act, GradWrite pre_write, GradWrite bias_write) override;
  void do_fill_normal(Tensor t, NoiseStream s) override;
  void do_fill_truncated_normal(Tensor t, NoiseStream s) override;
  void do_reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) override;
  void do_reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc,
                           Tensor dh) override;

  void do_kl_forward(const Tensor& h, Tensor out) override;
  void do_kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) override;
  void do_l1_forward(const Tensor& x, const Tensor& v, Tensor out) override;
  void do_l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                      Tensor dv) override;
  void do_mean_forward(const Tensor& x, Tensor out) override;
  void do_mean_backward(const Tensor& d_out, Tensor dx) override;
  void do_cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out) override;
  void do_cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out, Tensor da,
                               Tensor db) override;
  void do_softplus_forward(const Tensor& x, Tensor out) override;
  void do_softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) override;
  void do_combine_forward(const ScalarTerms& terms, Tensor out) override;
  void do_combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) override;

  void do_rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                         const RmsPropHyper& h) override;
  void do_adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor beta_powers,
                      const AdamHyper& h) override;

  void do_increment_counter(int64_t* counter) override;
  void do_store_scalar(const Tensor& value, Tensor slots, int64_t base, const int64_t* counter,
                       int64_t stride) override;

  // Evaluation, not a step: grows its scratch buffers when needed and waits for the results.
  void do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k, int64_t index_offset,
                      int64_t* out_index, float* out_score) override;

 private:
  struct ScratchBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  void grow(ScratchBuffer& b, size_t bytes);  // outside steps only (it may allocate)
  void gemm_in(cublasComputeType_t compute, bool trans_a, bool trans_b, float alpha,
               const Tensor& a, const Tensor& b, float beta, Tensor c);
  // Waits for the stream, then throws an Error naming the op if a kernel recorded a fault.
  void wait_and_check_faults();
  void release() noexcept;
  cuda_detail::KernelContext context() const;

  int device_ = 0;
  std::string name_;
  int sm_count_ = 0;
  int cc_major_ = 0, cc_minor_ = 0;
  size_t total_memory_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  float* partials_ = nullptr;  // (kPartialFloats) per-block partial sums of the reductions
  cuda_detail::KernelFaultRecord* fault_ = nullptr;  // the first broken kernel invariant
  const bool tf32_;
  bool capturing_ = false;
  // topk_cosine's scratch, grown on demand and kept.
  ScratchBuffer topk_queries_;  // (queries, dim) normalised queries
  ScratchBuffer topk_tile_;     // (tile rows, dim) normalised gallery tile
  ScratchBuffer topk_scores_;   // (query chunk, tile rows) similarities
  ScratchBuffer topk_lists_;    // (queries, k) running top-k keys
  ScratchBuffer topk_flags_;    // (2) first non-finite query row, gallery row
  ScratchBuffer cache_flush_;   // time_seconds' L2 eviction buffer
};

}  // namespace zscrgan

#endif  // ZSCRGAN_KERNELS_CUDA_BACKEND_H
