// The argument checks of every Backend op, once for all backends: each public call checks,
// then calls the backend's do_<op>. Messages start with the op's name and give the shapes.
#include "backend/backend.h"

#include <sstream>
#include <string>

#include "core/error.h"

namespace zscrgan {

namespace {

// "37x129", or "37x129 (ld 140)" for a strided view.
std::string shape(const Tensor& t) {
  std::ostringstream os;
  os << t.rows << "x" << t.cols;
  if (t.rows > 1 && t.ld != t.cols) os << " (ld " << t.ld << ")";
  return os.str();
}

bool is_scalar(const Tensor& t) { return t.rows == 1 && t.cols == 1; }

void check_scalar(const char* op, const char* name, const Tensor& t) {
  if (!is_scalar(t)) fail(op, ": ", name, " is ", shape(t), ", expected a 1x1 scalar");
}

void check_same_shape(const char* op, const char* name_a, const Tensor& a, const char* name_b,
                      const Tensor& b) {
  if (!a.same_shape(b))
    fail(op, ": ", name_a, " is ", shape(a), " but ", name_b, " is ", shape(b),
         "; they must have one shape");
}

// An optional gradient: empty, or of the reference tensor's shape.
void check_optional_shape(const char* op, const char* name, const Tensor& grad,
                          const char* ref_name, const Tensor& ref) {
  if (!grad.empty() && !grad.same_shape(ref))
    fail(op, ": ", name, " is ", shape(grad), " but ", ref_name, " is ", shape(ref),
         "; a gradient has its value's shape");
}

void check_contiguous(const char* op, const char* name, const Tensor& t) {
  if (!t.contiguous()) fail(op, ": ", name, " (", shape(t), ") must be contiguous");
}

void check_bias(const char* op, const char* name, const Tensor& bias, const char* of_name,
                const Tensor& of) {
  if (bias.rows != 1 || bias.cols != of.cols)
    fail(op, ": ", name, " is ", shape(bias), ", expected 1x", of.cols, " for ", of_name, " ",
         shape(of));
}

}  // namespace

void Backend::check_tensor(const char* op, const char* name, const Tensor& t) const {
  if (t.rows < 0 || t.cols < 0) fail(op, ": ", name, " has a negative shape ", t.rows, "x", t.cols);
  if (t.rows > 1 && t.ld < t.cols)
    fail(op, ": ", name, " is ", t.rows, "x", t.cols, " with a row stride ", t.ld, " < ", t.cols);
  if (t.data == nullptr && t.numel() > 0) fail(op, ": ", name, " (", shape(t), ") has no data");
  if (t.data == nullptr && t.numel() == 0) return;  // nothing there to be on a device
  if (t.device != device())
    fail(op, ": ", name, " (", shape(t), ") is on ", device_name(t.device), ", this backend on ",
         device_name(device()));
}

void Backend::check_optional(const char* op, const char* name, const Tensor& t) const {
  if (!t.empty()) check_tensor(op, name, t);
}

// ---- memory and transfers ---------------------------------------------------------------------

void* Backend::allocate(size_t bytes) { return do_allocate(bytes); }

void Backend::deallocate(void* p) {
  if (p != nullptr) do_deallocate(p);
}

void Backend::upload(Tensor dst, const float* host) {
  check_tensor("upload", "dst", dst);
  if (dst.numel() > 0 && host == nullptr) fail("upload: no host data for dst ", shape(dst));
  do_upload(dst, host);
}

void Backend::download(const Tensor& src, float* host) {
  check_tensor("download", "src", src);
  if (src.numel() > 0 && host == nullptr) fail("download: no host buffer for src ", shape(src));
  do_download(src, host);
}

void Backend::upload_bytes(void* dst, const void* host, size_t bytes) {
  if (bytes > 0 && (dst == nullptr || host == nullptr))
    fail("upload_bytes: a null ", dst == nullptr ? "destination" : "source", " for ", bytes, " bytes");
  do_upload_bytes(dst, host, bytes);
}

void Backend::download_bytes(void* host, const void* src, size_t bytes) {
  if (bytes > 0 && (host == nullptr || src == nullptr))
    fail("download_bytes: a null ", host == nullptr ? "destination" : "source", " for ", bytes,
         " bytes");
  do_download_bytes(host, src, bytes);
}

void Backend::synchronize() { do_synchronize(); }

// ---- data movement and GEMM -------------------------------------------------------------------

void Backend::fill(Tensor t, float value) {
  check_tensor("fill", "t", t);
  do_fill(t, value);
}

void Backend::copy(Tensor dst, const Tensor& src) {
  check_tensor("copy", "dst", dst);
  check_tensor("copy", "src", src);
  check_same_shape("copy", "src", src, "dst", dst);
  do_copy(dst, src);
}

void Backend::axpy(Tensor y, float alpha, const Tensor& x) {
  check_tensor("axpy", "y", y);
  check_tensor("axpy", "x", x);
  check_same_shape("axpy", "x", x, "y", y);
  do_axpy(y, alpha, x);
}

void Backend::gather_rows(Tensor dst, const Tensor& src, IndexSpan rows) {
  check_tensor("gather_rows", "dst", dst);
  check_tensor("gather_rows", "src", src);
  if (rows.n != dst.rows || src.cols != dst.cols)
    fail("gather_rows: ", rows.n, " rows of src ", shape(src), " into dst ", shape(dst),
         "; dst must have one row per index and src's width");
  if (rows.n > 0 && rows.data == nullptr) fail("gather_rows: no indices for ", rows.n, " rows");
  if (rows.step != nullptr && rows.step_stride < 0)
    fail("gather_rows: negative step stride ", rows.step_stride);
  do_gather_rows(dst, src, rows);
}

namespace {

// Throws unless op(A) op(B) fits C.
void check_gemm(const char* op, bool ta, bool tb, const Tensor& a, const Tensor& b,
                const Tensor& c) {
  const int m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const int kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols;
  if (k != kb || c.rows != m || c.cols != n)
    fail(op, ": op(A) ", m, "x", k, ", op(B) ", kb, "x", n, " and C ", c.rows, "x", c.cols,
         " do not fit (A ", shape(a), (ta ? " transposed" : ""), ", B ", shape(b),
         (tb ? " transposed" : ""), ")");
}

}  // namespace

void Backend::gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b,
                   float beta, Tensor c) {
  check_tensor("gemm", "A", a);
  check_tensor("gemm", "B", b);
  check_tensor("gemm", "C", c);
  check_gemm("gemm", trans_a, trans_b, a, b, c);
  do_gemm(trans_a, trans_b, alpha, a, b, beta, c);
}

// ---- fused layer pieces -----------------------------------------------------------------------

void Backend::gemm_bias_act(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b,
                            float beta, Tensor c, const Tensor& bias, Act act) {
  check_tensor("gemm_bias_act", "A", a);
  check_tensor("gemm_bias_act", "B", b);
  check_tensor("gemm_bias_act", "C", c);
  check_tensor("gemm_bias_act", "bias", bias);
  check_gemm("gemm_bias_act", trans_a, trans_b, a, b, c);
  check_bias("gemm_bias_act", "bias", bias, "C", c);
  do_gemm_bias_act(trans_a, trans_b, a, b, beta, c, bias, act);
}

void Backend::bias_act_forward(Tensor y, const Tensor& bias, Act act) {
  check_tensor("bias_act_forward", "y", y);
  check_tensor("bias_act_forward", "bias", bias);
  check_bias("bias_act_forward", "bias", bias, "y", y);
  do_bias_act_forward(y, bias, act);
}

void Backend::bias_act_backward(const Tensor& y, const Tensor& dy, Tensor d_pre, Tensor d_bias,
                                Act act, GradWrite pre_write, GradWrite bias_write) {
  const char* op = "bias_act_backward";
  check_tensor(op, "y", y);
  check_tensor(op, "dy", dy);
  check_optional(op, "d_pre", d_pre);
  check_optional(op, "d_bias", d_bias);
  check_same_shape(op, "dy", dy, "y", y);
  check_optional_shape(op, "d_pre", d_pre, "y", y);
  if (!d_bias.empty()) check_bias(op, "d_bias", d_bias, "y", y);
  if (d_pre.empty() && d_bias.empty()) return;
  do_bias_act_backward(y, dy, d_pre, d_bias, act, pre_write, bias_write);
}

// ---- noise and sampling -----------------------------------------------------------------------

void Backend::fill_normal(Tensor t, NoiseStream s) {
  check_tensor("fill_normal", "t", t);
  do_fill_normal(t, s);
}

void Backend::fill_truncated_normal(Tensor t, NoiseStream s) {
  check_tensor("fill_truncated_normal", "t", t);
  do_fill_truncated_normal(t, s);
}

namespace {

void check_reparam(const char* op, const Tensor& h, const Tensor& eps, const Tensor& c,
                   const char* c_name) {
  if (h.rows != c.rows || h.cols != 2 * c.cols || !eps.same_shape(c))
    fail(op, ": h ", shape(h), ", eps ", shape(eps), ", ", c_name, " ", shape(c),
         "; h must be B x 2E with eps and ", c_name, " B x E");
}

}  // namespace

void Backend::reparam_forward(const Tensor& h, const Tensor& eps, Tensor c) {
  check_tensor("reparam_forward", "h", h);
  check_tensor("reparam_forward", "eps", eps);
  check_tensor("reparam_forward", "c", c);
  check_reparam("reparam_forward", h, eps, c, "c");
  do_reparam_forward(h, eps, c);
}

void Backend::reparam_backward(const Tensor& h, const Tensor& eps, const Tensor& dc, Tensor dh) {
  const char* op = "reparam_backward";
  check_tensor(op, "h", h);
  check_tensor(op, "eps", eps);
  check_tensor(op, "dc", dc);
  check_optional(op, "dh", dh);
  check_reparam(op, h, eps, dc, "dc");
  check_optional_shape(op, "dh", dh, "h", h);
  if (dh.empty()) return;
  do_reparam_backward(h, eps, dc, dh);
}

// ---- losses -----------------------------------------------------------------------------------

namespace {

void check_even_width(const char* op, const Tensor& h) {
  if (h.cols % 2 != 0)
    fail(op, ": h is ", shape(h), ", an odd width (h must be [mu | log_sigma])");
}

}  // namespace

void Backend::kl_forward(const Tensor& h, Tensor out) {
  check_tensor("kl_forward", "h", h);
  check_tensor("kl_forward", "out", out);
  check_even_width("kl_forward", h);
  check_scalar("kl_forward", "out", out);
  do_kl_forward(h, out);
}

void Backend::kl_backward(const Tensor& h, const Tensor& d_out, Tensor dh) {
  check_tensor("kl_backward", "h", h);
  check_tensor("kl_backward", "d_out", d_out);
  check_optional("kl_backward", "dh", dh);
  check_even_width("kl_backward", h);
  check_scalar("kl_backward", "d_out", d_out);
  check_optional_shape("kl_backward", "dh", dh, "h", h);
  if (dh.empty()) return;
  do_kl_backward(h, d_out, dh);
}

void Backend::l1_forward(const Tensor& x, const Tensor& v, Tensor out) {
  check_tensor("l1_forward", "x", x);
  check_tensor("l1_forward", "v", v);
  check_tensor("l1_forward", "out", out);
  check_same_shape("l1_forward", "x", x, "v", v);
  check_scalar("l1_forward", "out", out);
  do_l1_forward(x, v, out);
}

// The checks of a two-input loss's backward (l1, cosine_mean): inputs of one shape, a 1x1
// upstream gradient, optional gradients shaped like the inputs. False: no gradient is needed.
bool Backend::check_pair_loss_backward(const char* op, const Tensor& a, const Tensor& b,
                                       const Tensor& d_out, const Tensor& da, const Tensor& db,
                                       const char* const names[4]) const {
  check_tensor(op, names[0], a);
  check_tensor(op, names[1], b);
  check_tensor(op, "d_out", d_out);
  check_optional(op, names[2], da);
  check_optional(op, names[3], db);
  check_same_shape(op, names[0], a, names[1], b);
  check_scalar(op, "d_out", d_out);
  check_optional_shape(op, names[2], da, names[0], a);
  check_optional_shape(op, names[3], db, names[0], a);
  return !(da.empty() && db.empty());
}

void Backend::l1_backward(const Tensor& x, const Tensor& v, const Tensor& d_out, Tensor dx,
                          Tensor dv) {
  static const char* const names[4] = {"x", "v", "dx", "dv"};
  if (check_pair_loss_backward("l1_backward", x, v, d_out, dx, dv, names))
    do_l1_backward(x, v, d_out, dx, dv);
}

void Backend::mean_forward(const Tensor& x, Tensor out) {
  check_tensor("mean_forward", "x", x);
  check_tensor("mean_forward", "out", out);
  check_scalar("mean_forward", "out", out);
  do_mean_forward(x, out);
}

void Backend::mean_backward(const Tensor& d_out, Tensor dx) {
  check_tensor("mean_backward", "d_out", d_out);
  check_optional("mean_backward", "dx", dx);
  check_scalar("mean_backward", "d_out", d_out);
  if (dx.empty()) return;
  do_mean_backward(d_out, dx);
}

void Backend::cosine_mean_forward(const Tensor& a, const Tensor& b, Tensor out) {
  const char* op = "cosine_mean_forward";
  check_tensor(op, "a", a);
  check_tensor(op, "b", b);
  check_tensor(op, "out", out);
  check_same_shape(op, "a", a, "b", b);
  check_scalar(op, "out", out);
  do_cosine_mean_forward(a, b, out);
}

void Backend::cosine_mean_backward(const Tensor& a, const Tensor& b, const Tensor& d_out,
                                   Tensor da, Tensor db) {
  static const char* const names[4] = {"a", "b", "da", "db"};
  if (check_pair_loss_backward("cosine_mean_backward", a, b, d_out, da, db, names))
    do_cosine_mean_backward(a, b, d_out, da, db);
}

void Backend::softplus_forward(const Tensor& x, Tensor out) {
  check_tensor("softplus_forward", "x", x);
  check_tensor("softplus_forward", "out", out);
  check_same_shape("softplus_forward", "x", x, "out", out);
  do_softplus_forward(x, out);
}

void Backend::softplus_backward(const Tensor& x, const Tensor& d_out, Tensor dx) {
  check_tensor("softplus_backward", "x", x);
  check_tensor("softplus_backward", "d_out", d_out);
  check_optional("softplus_backward", "dx", dx);
  check_same_shape("softplus_backward", "x", x, "d_out", d_out);
  check_optional_shape("softplus_backward", "dx", dx, "x", x);
  if (dx.empty()) return;
  do_softplus_backward(x, d_out, dx);
}

void Backend::combine_forward(const ScalarTerms& terms, Tensor out) {
  if (terms.n < 0 || terms.n > kMaxTerms)
    fail("combine_forward: ", terms.n, " terms, at most ", kMaxTerms);
  for (int i = 0; i < terms.n; ++i)
    if (terms.value[i] == nullptr) fail("combine_forward: term ", i, " of ", terms.n, " has no value");
  check_tensor("combine_forward", "out", out);
  check_scalar("combine_forward", "out", out);
  do_combine_forward(terms, out);
}

void Backend::combine_backward(const ScalarTermGrads& grads, const Tensor& d_out) {
  if (grads.n < 0 || grads.n > kMaxTerms)
    fail("combine_backward: ", grads.n, " terms, at most ", kMaxTerms);
  check_tensor("combine_backward", "d_out", d_out);
  check_scalar("combine_backward", "d_out", d_out);
  do_combine_backward(grads, d_out);
}

// ---- optimizers -------------------------------------------------------------------------------

void Backend::check_rmsprop(const char* op, const Tensor& params, const Tensor& grads,
                            const Tensor& mean_square) const {
  check_tensor(op, "params", params);
  check_tensor(op, "grads", grads);
  check_tensor(op, "mean_square", mean_square);
  check_same_shape(op, "grads", grads, "params", params);
  check_same_shape(op, "mean_square", mean_square, "params", params);
  check_contiguous(op, "params", params);
  check_contiguous(op, "grads", grads);
  check_contiguous(op, "mean_square", mean_square);
}

void Backend::rmsprop_update(Tensor params, const Tensor& grads, Tensor mean_square,
                             const RmsPropHyper& h) {
  check_rmsprop("rmsprop_update", params, grads, mean_square);
  do_rmsprop_update(params, grads, mean_square, h);
}

void Backend::weight_grad_rmsprop_update(const Tensor& x, const Tensor& dy, Tensor params,
                                         Tensor grads, Tensor mean_square, const RmsPropHyper& h) {
  const char* op = "weight_grad_rmsprop_update";
  check_tensor(op, "x", x);
  check_tensor(op, "dy", dy);
  check_rmsprop(op, params, grads, mean_square);
  check_gemm(op, true, false, x, dy, params);
  do_weight_grad_rmsprop_update(x, dy, params, grads, mean_square, h);
}

void Backend::check_adam(const char* op, const Tensor& params, const Tensor& grads,
                         const Tensor& m, const Tensor& v, const Tensor& beta_powers) const {
  check_tensor(op, "params", params);
  check_tensor(op, "grads", grads);
  check_tensor(op, "m", m);
  check_tensor(op, "v", v);
  check_tensor(op, "beta_powers", beta_powers);
  check_same_shape(op, "grads", grads, "params", params);
  check_same_shape(op, "m", m, "params", params);
  check_same_shape(op, "v", v, "params", params);
  check_contiguous(op, "params", params);
  check_contiguous(op, "grads", grads);
  check_contiguous(op, "m", m);
  check_contiguous(op, "v", v);
  if (beta_powers.numel() != 2 || !beta_powers.contiguous())
    fail(op, ": beta_powers is ", shape(beta_powers), ", expected two contiguous floats (1x2)");
}

void Backend::adam_update(Tensor params, const Tensor& grads, Tensor m, Tensor v,
                          Tensor beta_powers, const AdamHyper& h) {
  check_adam("adam_update", params, grads, m, v, beta_powers);
  do_adam_update(params, grads, m, v, beta_powers, h);
}

void Backend::weight_grad_adam_update(const Tensor& x, const Tensor& dy, Tensor params,
                                      Tensor grads, Tensor m, Tensor v, Tensor beta_powers,
                                      const AdamHyper& h) {
  const char* op = "weight_grad_adam_update";
  check_tensor(op, "x", x);
  check_tensor(op, "dy", dy);
  check_adam(op, params, grads, m, v, beta_powers);
  check_gemm(op, true, false, x, dy, params);
  do_weight_grad_adam_update(x, dy, params, grads, m, v, beta_powers, h);
}

// ---- counters ---------------------------------------------------------------------------------

void Backend::increment_counter(int64_t* counter) {
  if (counter == nullptr) fail("increment_counter: no counter");
  do_increment_counter(counter);
}

void Backend::store_scalar(const Tensor& value, Tensor slots, int64_t base,
                           const int64_t* counter, int64_t stride) {
  check_tensor("store_scalar", "value", value);
  check_tensor("store_scalar", "slots", slots);
  check_scalar("store_scalar", "value", value);
  check_contiguous("store_scalar", "slots", slots);
  if (counter == nullptr && (base < 0 || base >= static_cast<int64_t>(slots.numel())))
    fail("store_scalar: slot ", base, " of ", slots.numel(), " (slots ", shape(slots), ")");
  do_store_scalar(value, slots, base, counter, stride);
}

// ---- retrieval --------------------------------------------------------------------------------

void Backend::topk_cosine(const Tensor& queries, const Tensor& gallery, int k,
                          int64_t index_offset, int64_t* out_index, float* out_score) {
  check_tensor("topk_cosine", "queries", queries);
  check_tensor("topk_cosine", "gallery", gallery);
  if (queries.cols != gallery.cols)
    fail("topk_cosine: queries ", shape(queries), " and gallery ", shape(gallery),
         " differ in width");
  if (k < 1) fail("topk_cosine: k must be >= 1, got ", k);
  if (queries.cols < 1) fail("topk_cosine: dim must be >= 1, got ", queries.cols);
  if (index_offset < 0) fail("topk_cosine: index_offset must be >= 0, got ", index_offset);
  if (queries.rows > 0 && (out_index == nullptr || out_score == nullptr))
    fail("topk_cosine: no host arrays for ", queries.rows, " x ", k, " results");
  check_top_k_supported(*this, k);
  do_topk_cosine(queries, gallery, k, index_offset, out_index, out_score);
}

void check_top_k_supported(const Backend& be, int top_k) {
  const int most = be.max_top_k();
  if (top_k > most)
    fail("top_k ", top_k, " is above the ", most, " that the ", device_name(be.device()),
         " backend selects per query; use a top_k of at most ", most,
         be.device() == Device::CPU ? "" : ", or the cpu device (no limit)");
}

// ---- capture ----------------------------------------------------------------------------------

std::unique_ptr<CapturedProgram> capture(Backend& be, const std::function<void()>& record) {
  be.begin_capture();
  try {
    record();
  } catch (...) {
    be.abort_capture();
    throw;
  }
  return be.end_capture();
}

}  // namespace zscrgan
