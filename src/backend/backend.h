// The backend interface: every op the model needs, declared once. The CPU backend
// (backend/cpu) is the reference and always builds; the CUDA backend (backend/cuda)
// implements the same calls; device/device.h chooses between them. The tape, the losses, the trainer and
// the evaluation only ever talk to this interface.
//
// Conventions
// - Tensors are row-major views (see tensor.h) on the backend's device.
// - Backward calls *accumulate* into gradient tensors (+=); an empty gradient tensor means
//   "not needed" and is skipped. bias_act_backward (and gemm, through beta = 0) can also
//   overwrite (=), which the tape uses for the first writer of a gradient in a backward pass,
//   so that gradient buffers need no zero-fill before it.
// - Scalars (losses) are 1x1 tensors that stay on the device. Backward calls read the
//   upstream gradient from a 1x1 device tensor, so no step ever waits for the host.
// - Only allocate(), synchronize(), the explicit host transfers and the calls made outside
//   steps (topk_cosine, whose results are host arrays and whose scratch may grow, and
//   time_seconds) allocate backend memory or synchronise; the ops a step is made of must do
//   neither (a captured step could not).
#ifndef ZSCRGAN_BACKEND_H
#define ZSCRGAN_BACKEND_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "backend/elementwise.h"
#include "core/tensor.h"

namespace zscrgan {

// Up to kMaxTerms device scalars combined as sum_i weight_i * value_i + constant.
constexpr int kMaxTerms = 8;
struct ScalarTerms {
  const float* value[kMaxTerms] = {};
  float weight[kMaxTerms] = {};
  int n = 0;
  float constant = 0.f;
};
// How a backward call writes a gradient tensor: += (the default) or = (the first writer).
enum class GradWrite { Accumulate, Overwrite };

struct ScalarTermGrads {
  float* grad[kMaxTerms] = {};  // null: that term needs no gradient
  float weight[kMaxTerms] = {};
  int n = 0;
};

// A captured sequence of backend calls (a CUDA graph) that can be replayed.
class CapturedProgram {
 public:
  virtual ~CapturedProgram() = default;
  virtual void replay() = 0;
};

// The public calls check their arguments (shapes, the devices of the tensors, 1x1 scalars,
// index spans, k), here and only here, for every backend, and throw an Error naming the op and
// the shapes; then they call the protected do_<op> that a backend implements. A do_<op> may
// take its arguments as checked. Invariants only a device can see (a row index read from
// device memory, a kernel's limits) are the backend's own.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Names the library, ISA and threads the math runs on, e.g.
  // "cpu (oneDNN 2.6.3, avx512_core, 2 threads)".
  virtual std::string description() const = 0;

  // ---- memory and transfers (start-up, evaluation and logging; never inside a step) ----
  void* allocate(size_t bytes);  // throws Error naming the size on failure
  void deallocate(void* p);
  void upload(Tensor dst, const float* host);  // host: dst.rows x dst.cols, dense
  void download(const Tensor& src, float* host);
  void upload_bytes(void* dst, const void* host, size_t bytes);
  void download_bytes(void* host, const void* src, size_t bytes);
  void synchronize();

  // ---- data movement and simple arithmetic ----
  void fill(Tensor t, float value);
  void copy(Tensor dst, const Tensor& src);                    // same shape
  void axpy(Tensor y, float alpha, const Tensor& x);           // y += alpha x
  void gather_rows(Tensor dst, const Tensor& src, IndexSpan rows);  // dst[i] = src[rows[i]]

  // C = alpha op(A) op(B) + beta C, all row-major.
  void gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b,
            float beta, Tensor c);

  // ---- fused layer pieces ----
  // C = act(op(A) op(B) + bias + beta C): a dense layer's forward in one call where the
  // backend can fuse it (the CPU backend: one oneDNN matmul with bias and activation
  // post-ops); by default a GEMM followed by bias_act_forward.
  void gemm_bias_act(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b, float beta,
                     Tensor c, const Tensor& bias, Act act);
  // y = act(y + bias) in place; bias is 1 x y.cols.
  void bias_act_forward(Tensor y, const Tensor& bias, Act act);
  // g = dy * act'(y) (from the output y); d_pre += g; d_bias += column sums of g. With
  // GradWrite::Overwrite, d_pre = g or d_bias = the column sums instead (the same bits as
  // adding into zeros).
  void bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre, Tensor d_bias, Act act,
                         GradWrite pre_write = GradWrite::Accumulate,
                         GradWrite bias_write = GradWrite::Accumulate);

  // ---- noise: element i of the fill is a pure function of (stream, i) ----
  void fill_normal(Tensor t, NoiseStream s);
  void fill_truncated_normal(Tensor t, NoiseStream s);

  // ---- reparameterised sampling: c = h[:, :E] + exp(h[:, E:]) * eps, h is B x 2E ----
  void reparam_forward(const Tensor& h, const Tensor& eps, Tensor c);
  void reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc, Tensor dh);

  // ---- losses: forward writes a 1x1 scalar; backward scales by the 1x1 d_out ----
  // Published KL term over h = [mu | log_sigma] (B x 2E), mean over B x E elements.
  void kl_forward(const Tensor& h, Tensor out);
  void kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh);
  // mean over rows of sum over columns |x - v|.
  void l1_forward(const Tensor& x, const Tensor& v, Tensor out);
  void l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx, Tensor dv);
  // mean of all elements.
  void mean_forward(const Tensor& x, Tensor out);
  void mean_backward(const Tensor& d_out, Tensor dx);
  // mean over rows of cos(a_i, b_i), rows L2-normalised as TF's l2_normalize.
  void cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out);
  void cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out, Tensor da,
                            Tensor db);
  // elementwise log(1 + exp(x)); d_out (like out) has x's shape.
  void softplus_forward(const Tensor& x, Tensor out);
  void softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx);
  // out = sum_i w_i v_i + constant (1x1); backward: grad_i += w_i * d_out.
  void combine_forward(const ScalarTerms& terms, Tensor out);
  void combine_backward(const ScalarTermGrads& grads, const Tensor& d_out);

  // ---- optimizers over a network's flat parameter range ----
  // RMSProp (TF1), with the critic's clip fused in when h.clip > 0.
  void rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                      const RmsPropHyper& h);
  // rmsprop_update for a dense layer's weight, its gradient given as the product x^T dy
  // (x: K x M, dy: K x N, params: M x N), so that the gradient need not make a trip through
  // memory between the GEMM that forms it and the update. `grads` (M x N) is scratch: by
  // default the gradient is formed there (gemm, then rmsprop_update); the CPU backend forms it
  // a few rows at a time in its cache and leaves `grads` untouched. Either way, read nothing
  // from `grads` afterwards.
  void weight_grad_rmsprop_update(const Tensor& x, const Tensor& dy, Tensor params, Tensor grads,
                                  Tensor mean_square, const RmsPropHyper& h);
  // Adam (TF1). beta_powers is a 1x2 device tensor [beta1^t, beta2^t] read for lr_t and then,
  // when h.advance_beta_powers, advanced by (beta1, beta2), as TF does after each apply.
  void adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor beta_powers,
                   const AdamHyper& h);
  // adam_update for a dense layer's weight, its gradient given as the product x^T dy, as in
  // weight_grad_rmsprop_update (`grads` is scratch: read nothing from it afterwards).
  void weight_grad_adam_update(const Tensor& x, const Tensor& dy, Tensor params, Tensor grads,
                               Tensor m, Tensor v, Tensor beta_powers, const AdamHyper& h);

  // A device int64 counter += 1 (advances replayed steps; see NoiseStream / IndexSpan).
  void increment_counter(int64_t* counter);
  // slots[base + (*counter) * stride] = value (1x1); a null counter reads as 0. Lets a
  // replayed step log its loss into the slot of the iteration it is replaying. With a null
  // counter the slot is checked here; with one, the backend checks it where it reads the counter.
  void store_scalar(const Tensor& value, Tensor slots, int64_t base, const int64_t* counter,
                    int64_t stride);

  // ---- capture: record the calls between begin and end once, replay them many times ----
  // Backends without capture return false and are driven eagerly. Record through capture()
  // below, which closes the capture however the recording ends.
  virtual bool can_capture() const { return false; }
  virtual void begin_capture() {}
  virtual std::unique_ptr<CapturedProgram> end_capture() { return nullptr; }
  // Drops the open capture, if any, keeping nothing of it: the backend runs eagerly again, so
  // a checkpoint can still be saved and memory freed after a recording threw.
  virtual void abort_capture() noexcept {}

  // ---- timing, for the benchmarks (outside steps: it may allocate and synchronises) ----
  // Seconds `work` takes on this backend's clock. With cold_cache the backend first evicts its
  // caches where it can, so inputs come from memory as in a training step (CUDA: the L2, by
  // writing a buffer larger than it). By default: host wall-clock between two synchronizes.
  virtual double time_seconds(const std::function<void()>& work, bool cold_cache) {
    (void)cold_cache;
    synchronize();
    const auto start = std::chrono::steady_clock::now();
    work();
    synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // ---- retrieval ----
  // For each query row, the k gallery rows of highest cosine similarity (rows L2-normalised
  // as above), best first, ties broken by the lower gallery index. Results go to host
  // arrays of queries.rows x k; indices are gallery row numbers plus index_offset.
  void topk_cosine(const Tensor& queries, const Tensor& gallery, int k, int64_t index_offset,
                   int64_t* out_index, float* out_score);
  // The largest k topk_cosine selects per query (a kernel's limit; unbounded by default).
  virtual int max_top_k() const { return std::numeric_limits<int>::max(); }

 protected:
  // ---- what a backend implements; the arguments are checked as the public calls say ----
  // Backward calls are not made when every gradient they would write is empty (but
  // do_combine_backward is, and skips its null grads itself).
  virtual void* do_allocate(size_t bytes) = 0;
  virtual void do_deallocate(void* p) = 0;
  virtual void do_upload(Tensor dst, const float* host) = 0;
  virtual void do_download(const Tensor& src, float* host) = 0;
  virtual void do_upload_bytes(void* dst, const void* host, size_t bytes) = 0;
  virtual void do_download_bytes(void* host, const void* src, size_t bytes) = 0;
  virtual void do_synchronize() = 0;

  virtual void do_fill(Tensor t, float value) = 0;
  virtual void do_copy(Tensor dst, const Tensor& src) = 0;
  virtual void do_axpy(Tensor y, float alpha, const Tensor& x) = 0;
  virtual void do_gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) = 0;
  virtual void do_gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b,
                       float beta, Tensor c) = 0;

  // By default do_gemm, then do_bias_act_forward.
  virtual void do_gemm_bias_act(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b,
                                float beta, Tensor c, const Tensor& bias, Act act) {
    do_gemm(trans_a, trans_b, 1.f, a, b, beta, c);
    do_bias_act_forward(c, bias, act);
  }
  virtual void do_bias_act_forward(Tensor y, const Tensor& bias, Act act) = 0;
  virtual void do_bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre,
                                    Tensor d_bias, Act act, GradWrite pre_write,
                                    GradWrite bias_write) = 0;

  virtual void do_fill_normal(Tensor t, NoiseStream s) = 0;
  virtual void do_fill_truncated_normal(Tensor t, NoiseStream s) = 0;
  virtual void do_reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) = 0;
  virtual void do_reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc,
                                   Tensor dh) = 0;

  virtual void do_kl_forward(const Tensor& h, Tensor out) = 0;
  virtual void do_kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) = 0;
  virtual void do_l1_forward(const Tensor& x, const Tensor& v, Tensor out) = 0;
  virtual void do_l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                              Tensor dv) = 0;
  virtual void do_mean_forward(const Tensor& x, Tensor out) = 0;
  virtual void do_mean_backward(const Tensor& d_out, Tensor dx) = 0;
  virtual void do_cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out) = 0;
  virtual void do_cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out,
                                       Tensor da, Tensor db) = 0;
  virtual void do_softplus_forward(const Tensor& x, Tensor out) = 0;
  virtual void do_softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) = 0;
  virtual void do_combine_forward(const ScalarTerms& terms, Tensor out) = 0;
  virtual void do_combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) = 0;

  virtual void do_rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                                 const RmsPropHyper& h) = 0;
  // By default do_gemm into grads, then do_rmsprop_update.
  virtual void do_weight_grad_rmsprop_update(const Tensor& x, const Tensor& dy, Tensor params,
                                             Tensor grads, Tensor mean_square,
                                             const RmsPropHyper& h) {
    do_gemm(true, false, 1.f, x, dy, 0.f, grads);
    do_rmsprop_update(params, grads, mean_square, h);
  }
  virtual void do_adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v,
                              Tensor beta_powers, const AdamHyper& h) = 0;
  // By default do_gemm into grads, then do_adam_update.
  virtual void do_weight_grad_adam_update(const Tensor& x, const Tensor& dy, Tensor params,
                                          Tensor grads, Tensor m, Tensor v, Tensor beta_powers,
                                          const AdamHyper& h) {
    do_gemm(true, false, 1.f, x, dy, 0.f, grads);
    do_adam_update(params, grads, m, v, beta_powers, h);
  }
  virtual void do_increment_counter(int64_t* counter) = 0;
  virtual void do_store_scalar(const Tensor& value, Tensor slots, int64_t base,
                               const int64_t* counter, int64_t stride) = 0;

  virtual void do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k,
                              int64_t index_offset, int64_t* out_index, float* out_score) = 0;

 private:
  // Throws unless t is a well-formed view (rows, cols >= 0, ld >= cols, data for a non-empty
  // shape) on this backend's device. `name` is the argument's name in the op's signature.
  void check_tensor(const char* op, const char* name, const Tensor& t) const;
  // The same for an optional tensor (a gradient): nothing to check when it is empty.
  void check_optional(const char* op, const char* name, const Tensor& t) const;
  // params, grads and mean_square: well-formed, one shape, contiguous.
  void check_rmsprop(const char* op, const Tensor& params, const Tensor& grads,
                     const Tensor& mean_square) const;
  // params, grads, m and v: well-formed, one shape, contiguous; beta_powers two floats.
  void check_adam(const char* op, const Tensor& params, const Tensor& grads, const Tensor& m,
                  const Tensor& v, const Tensor& beta_powers) const;
  bool check_pair_loss_backward(const char* op, const Tensor& a, const Tensor& b,
                                const Tensor& d_out, const Tensor& da, const Tensor& db,
                                const char* const names[4]) const;
};

// The calls `record` makes on `be`, captured as one program (null where `be` cannot capture:
// then record ran eagerly). Should `record` throw, the capture is dropped before the exception
// goes on.
std::unique_ptr<CapturedProgram> capture(Backend& be, const std::function<void()>& record);

// Throws the one-line error for a top_k that `be` cannot select (above be.max_top_k()).
void check_top_k_supported(const Backend& be, int top_k);

}  // namespace zscrgan

#endif  // ZSCRGAN_BACKEND_H
