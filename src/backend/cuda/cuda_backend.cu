// The CUDA backend (its arguments checked by Backend): kernels (layers.cu, noise.cu, losses.cu,
// optimizers.cu, topk.cu) and cuBLAS GEMMs queued on one non-blocking stream.
#include "cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

namespace zscrgan {

using cuda_detail::KernelContext;

namespace {

// cuBLAS's workspace, set once so that no GEMM allocates (allocation would break graph
// capture). 32 MiB is what NVIDIA recommends for Hopper.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
// Partial sums of the two-stage reductions and of the bias gradients (4 MiB).
constexpr size_t kPartialFloats = size_t(1) << 20;
// Queries per similarity GEMM in topk_cosine: the scores of one chunk x one tile (32 MiB).
constexpr int kTopkQueryChunk = 2048;

double mib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

class CudaGraphProgram final : public CapturedProgram {
 public:
  CudaGraphProgram(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraphProgram() override { cudaGraphExecDestroy(exec_); }
  CudaGraphProgram(const CudaGraphProgram&) = delete;
  CudaGraphProgram& operator=(const CudaGraphProgram&) = delete;
  void replay() override { ZS_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// Never 0: cuBLAS and cudaMemcpy2D want a leading dimension of at least the row width.
size_t pitch_of(const Tensor& t) { return static_cast<size_t>(std::max({t.ld, t.cols, 1})); }

// A trivial kernel: whether it can be described tells whether this build's code runs on the
// device at all (a build for another architecture cannot).
__global__ void probe_kernel() {}

}  // namespace

// ---- set-up ---------------------------------------------------------------------------------

CudaBackend::CudaBackend(bool tf32) : tf32_(tf32) {
  try {
    ZS_CUDA_CHECK(cudaGetDevice(&device_));
    cudaDeviceProp prop;
    ZS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    name_ = prop.name;
    sm_count_ = prop.multiProcessorCount;
    cc_major_ = prop.major;
    cc_minor_ = prop.minor;
    total_memory_ = prop.totalGlobalMem;
    ZS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ZS_CUBLAS_CHECK(cublasCreate(&cublas_));
    // cublasSetStream resets the workspace to cuBLAS's own pool: set the stream first.
    ZS_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    cublas_workspace_ = allocate(kCublasWorkspaceBytes);
    ZS_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
    ZS_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
    // The math mode stays the default (no TF32); each GEMM names its compute type instead, so
    // that retrieval stays FP32 whatever tf32 says.
    ZS_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    partials_ = static_cast<float*>(allocate(kPartialFloats * sizeof(float)));
    fault_ = static_cast<cuda_detail::KernelFaultRecord*>(allocate(sizeof(cuda_detail::KernelFaultRecord)));
    // On stream_, like every kernel that may record a fault: stream_ does not wait for the
    // legacy default stream that a plain cudaMemset would be queued on.
    ZS_CUDA_CHECK(cudaMemsetAsync(fault_, 0, sizeof(cuda_detail::KernelFaultRecord), stream_));
  } catch (...) {
    release();
    throw;
  }
}

CudaBackend::~CudaBackend() { release(); }

void CudaBackend::release() noexcept {
  abort_capture();
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (ScratchBuffer* b : {&topk_queries_, &topk_tile_, &topk_scores_, &topk_lists_, &topk_flags_,
                           &cache_flush_}) {
    if (b->ptr != nullptr) cudaFree(b->ptr);
    *b = ScratchBuffer{};
  }
  if (partials_ != nullptr) cudaFree(partials_);
  partials_ = nullptr;
  if (fault_ != nullptr) cudaFree(fault_);
  fault_ = nullptr;
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  cublas_ = nullptr;
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
  cublas_workspace_ = nullptr;
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  cudaGetLastError();  // leave no error behind for the next checked call to misreport
}

double CudaBackend::time_seconds(const std::function<void()>& work, bool cold_cache) {
  constexpr size_t kFlushBytes = size_t(256) << 20;
  if (cold_cache) {
    grow(cache_flush_, kFlushBytes);
    static int value = 0;
    ZS_CUDA_CHECK(cudaMemsetAsync(cache_flush_.ptr, ++value & 0xff, kFlushBytes, stream_));
  }
  struct Events {  // destroyed however `work` ends
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Events() {
      if (start != nullptr) cudaEventDestroy(start);
      if (stop != nullptr) cudaEventDestroy(stop);
    }
  } ev;
  ZS_CUDA_CHECK(cudaEventCreate(&ev.start));
  ZS_CUDA_CHECK(cudaEventCreate(&ev.stop));
  ZS_CUDA_CHECK(cudaEventRecord(ev.start, stream_));
  work();
  ZS_CUDA_CHECK(cudaEventRecord(ev.stop, stream_));
  ZS_CUDA_CHECK(cudaEventSynchronize(ev.stop));
  float ms = 0.f;
  ZS_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.stop));
  wait_and_check_faults();
  return ms * 1e-3;
}

KernelContext CudaBackend::context() const {
  return KernelContext{stream_, std::max(1, sm_count_ * 16), partials_, kPartialFloats, fault_};
}

std::string CudaBackend::description() const {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << "cuda (" << name_ << ", compute capability " << cc_major_ << "."
     << cc_minor_ << ", " << sm_count_ << " SMs, "
     << static_cast<double>(total_memory_) / (1024.0 * 1024.0 * 1024.0) << " GiB, TF32 "
     << (tf32_ ? "on" : "off") << ")";
  return os.str();
}

void CudaBackend::wait_and_check_faults() {
  cuda_detail::KernelFaultRecord record;
  ZS_CUDA_CHECK(cudaMemcpyAsync(&record, fault_, sizeof record, cudaMemcpyDeviceToHost, stream_));
  ZS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (record.fault == cuda_detail::kNoFault) return;
  // The backend stays usable; the reset is ordered before any later kernel's fault.
  ZS_CUDA_CHECK(cudaMemsetAsync(fault_, 0, sizeof record, stream_));
  switch (record.fault) {
    case cuda_detail::kGatherRowIndex:
      fail_device("CUDA kernel check failed in gather_rows: output row ", record.where, " reads row ",
           record.value, " of a ", record.limit, "-row table (reported at the next synchronisation)");
    case cuda_detail::kStoreScalarSlot:
      fail_device("CUDA kernel check failed in store_scalar: slot ", record.value, " of ", record.limit,
           " (reported at the next synchronisation)");
    default:
      fail_device("CUDA kernel check failed: fault code ", record.fault);
  }
}

// ---- memory and transfers -------------------------------------------------------------------

void* CudaBackend::do_allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky: clear it
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    std::ostringstream os;
    os.precision(1);
    os << std::fixed << __FILE__ << ":" << __LINE__ << ": cudaMalloc of " << bytes << " bytes ("
       << mib(bytes) << " MiB) failed on " << name_ << ": " << cudaGetErrorName(err) << " ("
       << cudaGetErrorString(err) << "); " << mib(free_bytes) << " MiB free of "
       << mib(total_bytes) << " MiB";
    throw Error(os.str());
  }
  return p;
}

void CudaBackend::do_deallocate(void* p) {
  // Called from destructors (arenas, blocks), possibly while another error unwinds: report,
  // never throw.
  if (p == nullptr) return;
  const cudaError_t err = cudaFree(p);
  if (err != cudaSuccess)
    std::fprintf(stderr, "zscrgan: cudaFree failed: %s (%s)\n", cudaGetErrorName(err),
                 cudaGetErrorString(err));
}

void CudaBackend::do_upload(Tensor dst, const float* host) {
  if (dst.numel() == 0) return;
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(dst.cols);
  ZS_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, sizeof(float) * pitch_of(dst), host, row_bytes,
                                  row_bytes, dst.rows, cudaMemcpyHostToDevice, stream_));
  ZS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::do_download(const Tensor& src, float* host) {
  if (src.numel() == 0) return;
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(src.cols);
  ZS_CUDA_CHECK(cudaMemcpy2DAsync(host, row_bytes, src.data, sizeof(float) * pitch_of(src),
                                  row_bytes, src.rows, cudaMemcpyDeviceToHost, stream_));
  wait_and_check_faults();
}

void CudaBackend::do_upload_bytes(void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  ZS_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_));
  ZS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::do_download_bytes(void* host, const void* src, size_t bytes) {
  if (bytes == 0) return;
  ZS_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_));
  wait_and_check_faults();
}

void CudaBackend::do_synchronize() { wait_and_check_faults(); }

// ---- data movement and GEMM -----------------------------------------------------------------

void CudaBackend::do_fill(Tensor t, float value) { cuda_detail::launch_fill(context(), t, value); }

void CudaBackend::do_copy(Tensor dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(dst.cols);
  ZS_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, sizeof(float) * pitch_of(dst), src.data,
                                  sizeof(float) * pitch_of(src), row_bytes, dst.rows,
                                  cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::do_axpy(Tensor y, float alpha, const Tensor& x) {
  cuda_detail::launch_axpy(context(), y, alpha, x);
}

void CudaBackend::do_gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) {
  cuda_detail::launch_gather_rows(context(), dst, src, rows);
}

void CudaBackend::do_gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b,
                          float beta, Tensor c) {
  gemm_in(tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, ta, tb, alpha, a, b, beta, c);
}

void CudaBackend::gemm_in(cublasComputeType_t compute, bool ta, bool tb, float alpha,
                          const Tensor& a, const Tensor& b, float beta, Tensor c) {
  const int m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const int n = tb ? b.rows : b.cols;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // as the CPU backend defines it: C = beta C
    cuda_detail::launch_scale(context(), c, beta);
    return;
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix
  // with row stride ld is its own transpose in column-major with leading dimension ld. So
  // cuBLAS gets B first, A second, the same transpose flags, and n, m swapped.
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  ZS_CUBLAS_CHECK(cublasGemmEx(cublas_, op_b, op_a, n, m, k, &alpha, b.data, CUDA_R_32F,
                               static_cast<int>(pitch_of(b)), a.data, CUDA_R_32F,
                               static_cast<int>(pitch_of(a)), &beta, c.data, CUDA_R_32F,
                               static_cast<int>(pitch_of(c)), compute, CUBLAS_GEMM_DEFAULT));
}

// ---- fused layer pieces -----------------------------------------------------------------------

void CudaBackend::do_bias_act_forward(Tensor y, const Tensor& bias, Act act) {
  cuda_detail::launch_bias_act_forward(context(), y, bias, act);
}

void CudaBackend::do_bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre,
                                       Tensor d_bias, Act act, GradWrite pre_write,
                                       GradWrite bias_write) {
  cuda_detail::launch_bias_act_backward(context(), y, dy, d_pre, d_bias, act,
                                        pre_write == GradWrite::Overwrite,
                                        bias_write == GradWrite::Overwrite);
}

void CudaBackend::do_fill_normal(Tensor t, NoiseStream s) {
  cuda_detail::launch_fill_normal(context(), t, s, false);
}

void CudaBackend::do_fill_truncated_normal(Tensor t, NoiseStream s) {
  cuda_detail::launch_fill_normal(context(), t, s, true);
}

void CudaBackend::do_reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) {
  cuda_detail::launch_reparam_forward(context(), h, eps, c);
}

void CudaBackend::do_reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc,
                                      Tensor dh) {
  cuda_detail::launch_reparam_backward(context(), h, eps, dc, dh);
}

// ---- losses -----------------------------------------------------------------------------------

void CudaBackend::do_kl_forward(const Tensor& h, Tensor out) {
  cuda_detail::launch_kl_forward(context(), h, out);
}

void CudaBackend::do_kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) {
  cuda_detail::launch_kl_backward(context(), h, d_out, dh);
}

void CudaBackend::do_l1_forward(const Tensor& x, const Tensor& v, Tensor out) {
  cuda_detail::launch_l1_forward(context(), x, v, out);
}

void CudaBackend::do_l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                                 Tensor dv) {
  cuda_detail::launch_l1_backward(context(), x, v, d_out, dx, dv);
}

void CudaBackend::do_mean_forward(const Tensor& x, Tensor out) {
  cuda_detail::launch_mean_forward(context(), x, out);
}

void CudaBackend::do_mean_backward(const Tensor& d_out, Tensor dx) {
  cuda_detail::launch_mean_backward(context(), d_out, dx);
}

void CudaBackend::do_cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out) {
  cuda_detail::launch_cosine_mean_forward(context(), a, b, out);
}

void CudaBackend::do_cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out,
                                          Tensor da, Tensor db) {
  cuda_detail::launch_cosine_mean_backward(context(), a, b, d_out, da, db);
}

void CudaBackend::do_softplus_forward(const Tensor& x, Tensor out) {
  cuda_detail::launch_softplus_forward(context(), x, out);
}

void CudaBackend::do_softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) {
  cuda_detail::launch_softplus_backward(context(), x, d_out, dx);
}

void CudaBackend::do_combine_forward(const ScalarTerms& terms, Tensor out) {
  cuda_detail::launch_combine_forward(context(), terms, out);
}

void CudaBackend::do_combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) {
  cuda_detail::launch_combine_backward(context(), grads, d_out);
}

// ---- optimizers -------------------------------------------------------------------------------

void CudaBackend::do_rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                                    const RmsPropHyper& h) {
  cuda_detail::launch_rmsprop_update(context(), params.data, grads.data, mean_square.data,
                                     params.numel(), h);
}

void CudaBackend::do_adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v,
                                 Tensor beta_powers, const AdamHyper& h) {
  cuda_detail::launch_adam_update(context(), params.data, grads.data, m.data, v.data,
                                  params.numel(), beta_powers.data, h);
}

// ---- counters and capture ---------------------------------------------------------------------

void CudaBackend::do_increment_counter(int64_t* counter) {
  cuda_detail::launch_increment_counter(context(), counter);
}

void CudaBackend::do_store_scalar(const Tensor& value, Tensor slots, int64_t base,
                                  const int64_t* counter, int64_t stride) {
  cuda_detail::launch_store_scalar(context(), value, slots, base, counter, stride);
}

void CudaBackend::begin_capture() {
  ZS_CHECK(!capturing_, "begin_capture while a capture is already open");
  // Thread-local mode: only this thread's unsafe calls (a cudaMalloc, say) break the capture.
  ZS_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

void CudaBackend::abort_capture() noexcept {
  if (!capturing_) return;
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr)
    cudaGraphDestroy(graph);
  cudaGetLastError();  // an invalidated capture leaves an error the next checked call would report
}

std::unique_ptr<CapturedProgram> CudaBackend::end_capture() {
  ZS_CHECK(capturing_, "end_capture without begin_capture");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  ZS_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess)
    cuda_detail::throw_cuda_error(err, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  return std::make_unique<CudaGraphProgram>(exec, stream_);
}

// ---- retrieval --------------------------------------------------------------------------------

void CudaBackend::grow(ScratchBuffer& b, size_t bytes) {
  if (b.bytes >= bytes) return;
  if (b.ptr != nullptr) deallocate(b.ptr);
  b = ScratchBuffer{};
  b.ptr = allocate(bytes);
  b.bytes = bytes;
}

int CudaBackend::max_top_k() const { return cuda_detail::kTopkMaxK; }

void CudaBackend::do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k,
                                 int64_t index_offset, int64_t* out_index, float* out_score) {
  using cuda_detail::kTopkTileRows;
  ZS_CHECK(!capturing_, "topk_cosine is evaluation: it cannot be captured");
  const int nq = queries.rows, ng = gallery.rows, dim = queries.cols;
  if (nq == 0) return;
  // k (against max_top_k() too), dim, the offset and the widths are checked by
  // Backend::topk_cosine.
  const KernelContext ctx = context();
  grow(topk_flags_, 2 * sizeof(int));
  int* flags = static_cast<int*>(topk_flags_.ptr);
  cuda_detail::launch_first_non_finite_row(ctx, queries.data, static_cast<int64_t>(pitch_of(queries)),
                                           nq, dim, flags);
  cuda_detail::launch_first_non_finite_row(ctx, gallery.data, static_cast<int64_t>(pitch_of(gallery)),
                                           ng, dim, flags + 1);
  int first_bad[2];
  download_bytes(first_bad, flags, sizeof first_bad);
  if (first_bad[0] < nq) fail("topk_cosine: query row ", first_bad[0], " holds NaN or infinity");
  if (first_bad[1] < ng) fail("topk_cosine: gallery row ", first_bad[1], " holds NaN or infinity");

  // Every tile's GEMM has this shape, in every call: retrieval calls this once per gallery
  // chunk, and a short last chunk with a GEMM shape of its own could score a copy of a row
  // in another chunk differently in the last bit, turning a tie into an order.
  const int tile_rows = kTopkTileRows;
  const int chunk = std::min(nq, kTopkQueryChunk);
  const size_t fsize = sizeof(float);
  grow(topk_queries_, fsize * nq * static_cast<size_t>(std::max(dim, 1)));
  grow(topk_tile_, fsize * tile_rows * static_cast<size_t>(std::max(dim, 1)));
  grow(topk_scores_, fsize * chunk * static_cast<size_t>(tile_rows));
  const size_t list_bytes = sizeof(unsigned long long) * nq * static_cast<size_t>(k);
  grow(topk_lists_, list_bytes);
  float* qn = static_cast<float*>(topk_queries_.ptr);
  float* gn = static_cast<float*>(topk_tile_.ptr);
  float* scores = static_cast<float*>(topk_scores_.ptr);
  auto* lists = static_cast<unsigned long long*>(topk_lists_.ptr);

  cuda_detail::launch_l2_normalize_rows(ctx, queries.data, static_cast<int64_t>(pitch_of(queries)),
                                        nq, nq, dim, qn);
  ZS_CUDA_CHECK(cudaMemsetAsync(lists, 0xFF, list_bytes, stream_));  // every key kTopkEmptyKey
  for (int t0 = 0; t0 < ng; t0 += tile_rows) {
    const int valid = std::min(tile_rows, ng - t0);
    // The last tile is zero-padded to tile_rows: all tiles use one GEMM shape, so equal gallery
    // rows in different tiles get bit-identical scores (and ties stay ties).
    cuda_detail::launch_l2_normalize_rows(ctx, gallery.data + static_cast<size_t>(t0) * pitch_of(gallery),
                                          static_cast<int64_t>(pitch_of(gallery)), valid,
                                          tile_rows, dim, gn);
    const Tensor tile(gn, tile_rows, dim, Device::CUDA);
    for (int q0 = 0; q0 < nq; q0 += chunk) {
      const int nqc = std::min(chunk, nq - q0);
      const Tensor q(qn + static_cast<size_t>(q0) * dim, nqc, dim, Device::CUDA);
      const Tensor s(scores, nqc, tile_rows, Device::CUDA);
      gemm_in(CUBLAS_COMPUTE_32F, false, true, 1.f, q, tile, 0.f, s);  // FP32 whatever tf32 says
      cuda_detail::launch_topk_merge_tile(ctx, scores, tile_rows, nqc, valid,
                                          static_cast<uint32_t>(t0),
                                          lists + static_cast<size_t>(q0) * k, k);
    }
  }
  std::vector<unsigned long long> keys(static_cast<size_t>(nq) * k);
  download_bytes(keys.data(), lists, list_bytes);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == cuda_detail::kTopkEmptyKey) {  // k > gallery rows: empty slots, as on the CPU
      out_index[i] = -1;
      out_score[i] = -std::numeric_limits<float>::infinity();
      continue;
    }
    const uint32_t bits = cuda_detail::topk_key_score_bits(keys[i]);
    float score;
    std::memcpy(&score, &bits, sizeof score);
    out_index[i] = static_cast<int64_t>(cuda_detail::topk_key_index(keys[i])) + index_offset;
    out_score[i] = score;
  }
}

// ---- entry points -----------------------------------------------------------------------------

bool cuda_backend_compiled() { return true; }

std::string cuda_unavailable_reason() {
  try {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();
      // The two common cases in words: a machine without an NVIDIA driver reports the first.
      if (err == cudaErrorInsufficientDriver)
        return "no NVIDIA driver for CUDA " + std::to_string(CUDART_VERSION / 1000) + "." +
               std::to_string(CUDART_VERSION % 1000 / 10) +
               " or newer: cudaGetDeviceCount returned cudaErrorInsufficientDriver";
      if (err == cudaErrorNoDevice)
        return "no CUDA device is visible: cudaGetDeviceCount returned cudaErrorNoDevice";
      return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" +
             cudaGetErrorString(err) + ")";
    }
    if (count == 0) return "no CUDA device is visible (cudaGetDeviceCount found 0)";
    int device = 0;
    err = cudaGetDevice(&device);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return std::string("cudaGetDevice failed: ") + cudaGetErrorName(err) + " (" +
             cudaGetErrorString(err) + ")";
    }
    cudaFuncAttributes attributes;
    err = cudaFuncGetAttributes(&attributes, probe_kernel);
    if (err != cudaSuccess) {
      cudaGetLastError();
      cudaDeviceProp prop;
      std::string what = "device " + std::to_string(device);
      if (cudaGetDeviceProperties(&prop, device) == cudaSuccess)
        what = std::string(prop.name) + " (compute capability " + std::to_string(prop.major) +
               "." + std::to_string(prop.minor) + ")";
      else
        cudaGetLastError();
      return "this build's kernels cannot run on " + what + ": " + cudaGetErrorName(err) + " (" +
             cudaGetErrorString(err) + "); rebuild with -DZSCRGAN_CUDA_ARCHS=native";
    }
    return "";
  } catch (const std::exception& e) {
    return std::string("probing for a CUDA device failed: ") + e.what();
  }
}

std::unique_ptr<Backend> make_cuda_backend(bool tf32) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) fail_device("--device cuda: ", reason);
  return std::make_unique<CudaBackend>(tf32);
}


}  // namespace zscrgan
