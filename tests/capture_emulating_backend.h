// A test backend that behaves like CUDA-graph capture on top of the CPU backend.
//
// Between begin_capture() and end_capture() every op is recorded with its arguments copied by
// value (tensor views, noise streams, index spans, scalar terms, hyper-parameters: exactly what
// a kernel launch freezes into a graph node) and is not run; replay() runs the recording.
// Whatever a replayed step reads through a pointer is read at replay time, as on a GPU, and
// whatever it was handed by value stays as it was at capture. So a trainer that bakes a value
// that changes between replays into a captured call computes something else here than on the
// plain CPU backend, and a test comparing the two sees it.
//
// Calls that a CUDA graph cannot hold (allocation, host transfers, synchronisation, retrieval
// into host arrays) fail the test when made during capture.
#ifndef ZSCRGAN_TESTS_CAPTURE_EMULATING_BACKEND_H
#define ZSCRGAN_TESTS_CAPTURE_EMULATING_BACKEND_H

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace zscrgan::testing {

class CaptureEmulatingBackend final : public Backend {
 public:
  explicit CaptureEmulatingBackend(std::unique_ptr<Backend> inner = make_cpu_backend())
      : inner_(std::move(inner)) {}

  int captures() const { return captures_; }  // programs recorded so far
  int64_t replays() const { return replays_; }
  // Fault injection: in the next capture, recording call number `n` (from 0) throws a
  // DeviceError, as a launch that fails while a CUDA graph is recorded does.
  void fail_captured_call(int n) { fail_at_call_ = n; }
  // Emulates a device kernel's limit on topk_cosine's k (the CUDA backend's is 1024).
  void set_max_top_k(int k) { max_top_k_ = k; }

  Device device() const override { return inner_->device(); }
  std::string description() const override { return "capture emulation over " + inner_->description(); }

  // ---- capture ----
  bool can_capture() const override { return true; }
  void begin_capture() override {
    if (recording_) fail_test("begin_capture inside a capture");
    recording_ = std::make_shared<std::vector<Call>>();
  }
  std::unique_ptr<CapturedProgram> end_capture() override {
    if (!recording_) fail_test("end_capture without begin_capture");
    ++captures_;
    auto program = std::make_unique<Program>(*this, std::move(recording_));
    recording_.reset();
    return program;
  }
  void abort_capture() noexcept override { recording_.reset(); }
  int max_top_k() const override { return max_top_k_ > 0 ? max_top_k_ : inner_->max_top_k(); }

 protected:
  // Backend::<op> has checked the arguments (at capture time, as a CUDA backend checks them
  // when it records the launch); the inner backend's public calls check them again when they
  // run.

  // ---- not allowed in a captured program ----
  void* do_allocate(size_t bytes) override {
    refuse_in_capture("allocate");
    return inner_->allocate(bytes);
  }
  void do_deallocate(void* p) override {
    refuse_in_capture("deallocate");
    inner_->deallocate(p);
  }
  void do_upload(Tensor dst, const float* host) override {
    refuse_in_capture("upload");
    inner_->upload(dst, host);
  }
  void do_download(const Tensor& src, float* host) override {
    refuse_in_capture("download");
    inner_->download(src, host);
  }
  void do_upload_bytes(void* dst, const void* host, size_t bytes) override {
    refuse_in_capture("upload_bytes");
    inner_->upload_bytes(dst, host, bytes);
  }
  void do_download_bytes(void* host, const void* src, size_t bytes) override {
    refuse_in_capture("download_bytes");
    inner_->download_bytes(host, src, bytes);
  }
  void do_synchronize() override {
    refuse_in_capture("synchronize");
    inner_->synchronize();
  }
  void do_topk_cosine(const Tensor& queries, const Tensor& gallery, int k, int64_t index_offset,
                      int64_t* out_index, float* out_score) override {
    refuse_in_capture("topk_cosine");
    inner_->topk_cosine(queries, gallery, k, index_offset, out_index, out_score);
  }

  // ---- recorded by value during capture, run at once otherwise ----
  // ([=] copies every argument, the referenced ones included: a const Tensor& is captured as a
  // Tensor, the view a kernel launch would freeze.)
  void do_fill(Tensor t, float value) override { op([=](Backend& b) { b.fill(t, value); }); }
  void do_copy(Tensor dst, const Tensor& src) override {
    op([=](Backend& b) { b.copy(dst, src); });
  }
  void do_axpy(Tensor y, float alpha, const Tensor& x) override {
    op([=](Backend& b) { b.axpy(y, alpha, x); });
  }
  void do_gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) override {
    op([=](Backend& b) { b.gather_rows(dst, src, rows); });
  }
  void do_gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b_,
               float beta, Tensor c) override {
    op([=](Backend& b) { b.gemm(trans_a, trans_b, alpha, a, b_, beta, c); });
  }
  void do_gemm_bias_act(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b_, float beta,
                        Tensor c, const Tensor& bias, Act act) override {
    op([=](Backend& b) { b.gemm_bias_act(trans_a, trans_b, a, b_, beta, c, bias, act); });
  }
  void do_bias_act_forward(Tensor y, const Tensor& bias, Act act) override {
    op([=](Backend& b) { b.bias_act_forward(y, bias, act); });
  }
  void do_bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre, Tensor d_bias,
                            Act act, GradWrite pre_write, GradWrite bias_write) override {
    op([=](Backend& b) { b.bias_act_backward(y, dy, d_pre, d_bias, act, pre_write, bias_write); });
  }
  void do_fill_normal(Tensor t, NoiseStream s) override {
    op([=](Backend& b) { b.fill_normal(t, s); });
  }
  void do_fill_truncated_normal(Tensor t, NoiseStream s) override {
    op([=](Backend& b) { b.fill_truncated_normal(t, s); });
  }
  void do_reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) override {
    op([=](Backend& b) { b.reparam_forward(h, eps, c); });
  }
  void do_reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc,
                           Tensor dh) override {
    op([=](Backend& b) { b.reparam_backward(h, eps, dc, dh); });
  }
  void do_kl_forward(const Tensor& h, Tensor out) override {
    op([=](Backend& b) { b.kl_forward(h, out); });
  }
  void do_kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) override {
    op([=](Backend& b) { b.kl_backward(h, d_out, dh); });
  }
  void do_l1_forward(const Tensor& x, const Tensor& v, Tensor out) override {
    op([=](Backend& b) { b.l1_forward(x, v, out); });
  }
  void do_l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                      Tensor dv) override {
    op([=](Backend& b) { b.l1_backward(x, v, d_out, dx, dv); });
  }
  void do_mean_forward(const Tensor& x, Tensor out) override {
    op([=](Backend& b) { b.mean_forward(x, out); });
  }
  void do_mean_backward(const Tensor& d_out, Tensor dx) override {
    op([=](Backend& b) { b.mean_backward(d_out, dx); });
  }
  void do_cosine_mean_forward(const Tensor& a, const Tensor& b_, Tensor out) override {
    op([=](Backend& b) { b.cosine_mean_forward(a, b_, out); });
  }
  void do_cosine_mean_backward(const Tensor& a, const Tensor& b_, const Tensor& d_out, Tensor da,
                               Tensor db) override {
    op([=](Backend& b) { b.cosine_mean_backward(a, b_, d_out, da, db); });
  }
  void do_softplus_forward(const Tensor& x, Tensor out) override {
    op([=](Backend& b) { b.softplus_forward(x, out); });
  }
  void do_softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) override {
    op([=](Backend& b) { b.softplus_backward(x, d_out, dx); });
  }
  void do_combine_forward(const ScalarTerms& terms, Tensor out) override {
    op([=](Backend& b) { b.combine_forward(terms, out); });
  }
  void do_combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) override {
    op([=](Backend& b) { b.combine_backward(grads, d_out); });
  }
  void do_rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                         const RmsPropHyper& h) override {
    op([=](Backend& b) { b.rmsprop_update(params, grads, mean_square, h); });
  }
  void do_weight_grad_rmsprop_update(const Tensor& x, const Tensor& dy, Tensor params, Tensor grads,
                                     Tensor mean_square, const RmsPropHyper& h) override {
    op([=](Backend& b) { b.weight_grad_rmsprop_update(x, dy, params, grads, mean_square, h); });
  }
  void do_adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor beta_powers,
                      const AdamHyper& h) override {
    op([=](Backend& b) { b.adam_update(params, grads, m, v, beta_powers, h); });
  }
  void do_weight_grad_adam_update(const Tensor& x, const Tensor& dy, Tensor params, Tensor grads,
                                  Tensor m, Tensor v, Tensor beta_powers, const AdamHyper& h) override {
    op([=](Backend& b) { b.weight_grad_adam_update(x, dy, params, grads, m, v, beta_powers, h); });
  }
  void do_increment_counter(int64_t* counter) override {
    op([=](Backend& b) { b.increment_counter(counter); });
  }
  void do_store_scalar(const Tensor& value, Tensor slots, int64_t base, const int64_t* counter,
                       int64_t stride) override {
    op([=](Backend& b) { b.store_scalar(value, slots, base, counter, stride); });
  }

 private:
  using Call = std::function<void(Backend&)>;

  class Program final : public CapturedProgram {
   public:
    Program(CaptureEmulatingBackend& owner, std::shared_ptr<std::vector<Call>> calls)
        : owner_(owner), calls_(std::move(calls)) {}
    void replay() override {
      if (owner_.recording_) owner_.fail_test("replay inside a capture");
      ++owner_.replays_;
      for (const Call& c : *calls_) c(*owner_.inner_);
    }

   private:
    CaptureEmulatingBackend& owner_;
    std::shared_ptr<std::vector<Call>> calls_;
  };

  template <class F>
  void op(F&& f) {
    if (recording_) {
      if (static_cast<int64_t>(recording_->size()) == fail_at_call_) {
        fail_at_call_ = -1;
        fail_device("capture emulation: injected failure recording call ", recording_->size());
      }
      recording_->emplace_back(std::forward<F>(f));
    } else {
      f(*inner_);
    }
  }
  void refuse_in_capture(const char* what) {
    if (recording_) fail_test(std::string(what) + " called during capture");
  }
  [[noreturn]] void fail_test(const std::string& why) {
    ADD_FAILURE() << "capture emulation: " << why;
    throw std::logic_error("capture emulation: " + why);
  }

  std::unique_ptr<Backend> inner_;
  std::shared_ptr<std::vector<Call>> recording_;
  int captures_ = 0;
  int64_t replays_ = 0;
  int64_t fail_at_call_ = -1;  // none
  int max_top_k_ = 0;          // 0: the inner backend's
};

}  // namespace zscrgan::testing

#endif  // ZSCRGAN_TESTS_CAPTURE_EMULATING_BACKEND_H
