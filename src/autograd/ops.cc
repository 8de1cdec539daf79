#include "autograd/ops.h"

namespace zscrgan {
namespace ops {
namespace {

// Records `n` when the tape is recording and some input needs a gradient.
bool should_record(const Tape& tape, const Node& n) {
  if (!tape.recording()) return false;
  for (int i = 0; i < n.n_in; ++i)
    if (n.in[i].needs_grad()) return true;
  return false;
}

Var scalar_output(Tape& tape, bool with_grad) { return tape.new_var(1, 1, with_grad); }

// Each backward writes its gradients in the order the op listed them (Node::add_write); write i
// stores instead of adding when the tape planned it so (n.overwrites(i)).

// The weight gradient's beta: 0 for the first writer (no zero-fill needed before it).
float beta_of(const Node& n, int i) { return n.overwrites(i) ? 0.f : 1.f; }

// dst (+)= src: a copy for the first writer.
void add_or_copy(Backend& be, const Node& n, int i, const Tensor& dst, const Tensor& src) {
  if (n.overwrites(i))
    be.copy(dst, src);
  else
    be.axpy(dst, 1.f, src);
}

void matmul_backward(Backend& be, const Node& n) {
  const Var& w = n.in[n.n_in - 1];
  int row = 0, i = 0;
  for (int k = 0; k + 1 < n.n_in; ++k) {
    const Var& x = n.in[k];
    const Tensor wk = w.value.row_block(row, x.cols());
    if (x.needs_grad()) {
      be.gemm(false, true, 1.f, n.out.grad, wk, beta_of(n, i), x.grad);
      ++i;
    }
    if (w.needs_grad()) {
      if (!n.defers(i))  // else the tape's caller forms it (Tape::DeferredProduct)
        be.gemm(true, false, 1.f, x.value, n.out.grad, beta_of(n, i), w.grad.row_block(row, x.cols()));
      ++i;
    }
    row += x.cols();
  }
}

void bias_act_backward_node(Backend& be, const Node& n) {
  const bool pre = n.in[0].needs_grad();
  be.bias_act_backward(n.out.value, n.out.grad, n.in[0].grad, n.in[1].grad, n.act,
                       pre ? n.write_mode(0) : GradWrite::Accumulate,
                       n.in[1].needs_grad() ? n.write_mode(pre ? 1 : 0) : GradWrite::Accumulate);
}

void add_tiled_backward(Backend& be, const Node& n) {
  const Var& a = n.in[0];
  const Var& b = n.in[1];
  int i = 0;
  if (a.needs_grad()) add_or_copy(be, n, i++, a.grad, n.out.grad);
  if (b.needs_grad())
    for (int r = 0; r < a.rows(); r += b.rows()) {
      const Tensor tile = n.out.grad.row_block(r, b.rows());
      if (r == 0)
        add_or_copy(be, n, i, b.grad, tile);
      else
        be.axpy(b.grad, 1.f, tile);
    }
}

void reparam_backward_node(Backend& be, const Node& n) {
  be.reparam_backward(n.in[0].value, n.aux, n.out.grad, n.in[0].grad);
}

void concat_cols_backward(Backend& be, const Node& n) {
  int col = 0, i = 0;
  for (int k = 0; k < n.n_in; ++k) {
    const Var& x = n.in[k];
    if (x.needs_grad()) add_or_copy(be, n, i++, x.grad, n.out.grad.col_block(col, x.cols()));
    col += x.cols();
  }
}

void concat_rows_backward(Backend& be, const Node& n) {
  int row = 0, i = 0;
  for (int k = 0; k < n.n_in; ++k) {
    const Var& x = n.in[k];
    if (x.needs_grad()) add_or_copy(be, n, i++, x.grad, n.out.grad.row_block(row, x.rows()));
    row += x.rows();
  }
}

void kl_backward_node(Backend& be, const Node& n) { be.kl_backward(n.in[0].value, n.out.grad, n.in[0].grad); }
void l1_backward_node(Backend& be, const Node& n) {
  be.l1_backward(n.in[0].value, n.in[1].value, n.out.grad, n.in[0].grad, n.in[1].grad);
}
void mean_backward_node(Backend& be, const Node& n) { be.mean_backward(n.out.grad, n.in[0].grad); }
void cosine_backward_node(Backend& be, const Node& n) {
  be.cosine_mean_backward(n.in[0].value, n.in[1].value, n.out.grad, n.in[0].grad, n.in[1].grad);
}
void softplus_backward_node(Backend& be, const Node& n) {
  be.softplus_backward(n.in[0].value, n.out.grad, n.in[0].grad);
}
void combine_backward_node(Backend& be, const Node& n) {
  ScalarTermGrads g;
  g.n = n.n_in;
  for (int i = 0; i < n.n_in; ++i) {
    g.grad[i] = n.in[i].needs_grad() ? n.in[i].grad.data : nullptr;
    g.weight[i] = n.weight[i];
  }
  be.combine_backward(g, n.out.grad);
}

// The gradient writes of a backward that only accumulates: each needed input's whole gradient,
// in input order (the tape zero-fills what no earlier writer covers).
void add_accumulating_writes(Node& n) {
  for (int k = 0; k < n.n_in; ++k)
    if (n.in[k].needs_grad()) n.add_write(n.in[k].grad, false);
}

void check_scalar(const Var& v, const char* op) {
  ZS_CHECK(v.rows() == 1 && v.cols() == 1, op, ": expected a 1x1 scalar, got ", v.rows(), "x", v.cols());
}

}  // namespace

namespace {

// y = sum_k x_k W_k, then y = act(y + b) when `b` is given: fused into the last part's GEMM
// (Backend::gemm_bias_act), so the activation is not another pass over y.
Var matmul_parts(Tape& tape, std::initializer_list<Var> parts, const Var& w, const Var* b,
                 Act act) {
  ZS_CHECK(parts.size() >= 1 && parts.size() < static_cast<size_t>(kMaxTerms), "matmul parts: ", parts.size());
  const int rows = parts.begin()->rows();
  int in_cols = 0;
  for (const Var& x : parts) {
    ZS_CHECK(x.rows() == rows, "matmul: input parts have ", rows, " and ", x.rows(), " rows");
    in_cols += x.cols();
  }
  ZS_CHECK(w.rows() == in_cols, "matmul: inputs have ", in_cols, " columns in all, weight is ",
           w.rows(), "x", w.cols());
  Node n;
  n.backward = matmul_backward;
  for (const Var& x : parts) n.in[n.n_in++] = x;
  n.in[n.n_in++] = w;
  const bool record = should_record(tape, n);
  Var y = tape.new_var(rows, w.cols(), record);
  int row = 0;
  size_t part = 0;
  for (const Var& x : parts) {
    const Tensor wk = w.value.row_block(row, x.cols());
    const float beta = row == 0 ? 0.f : 1.f;
    if (b != nullptr && ++part == parts.size())
      tape.backend().gemm_bias_act(false, false, x.value, wk, beta, y.value, b->value, act);
    else
      tape.backend().gemm(false, false, 1.f, x.value, wk, beta, y.value);
    row += x.cols();
  }
  if (record) {
    row = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
      const Var& x = n.in[k];
      if (x.needs_grad()) n.add_write(x.grad, true);
      if (w.needs_grad()) n.add_product_write(w.grad.row_block(row, x.cols()), x.value, y.grad);
      row += x.cols();
    }
    n.out = y;
    tape.record(n);
  }
  return y;
}

// Records the backward of y = act(pre + b), whose forward has already been computed in place
// over pre's value.
Var record_bias_act(Tape& tape, const Var& pre, const Var& b, Act act) {
  Node n;
  n.backward = bias_act_backward_node;
  n.in[0] = pre;
  n.in[1] = b;
  n.n_in = 2;
  n.act = act;
  Var out{pre.value, Tensor()};  // in place: same value buffer, a gradient of its own
  if (should_record(tape, n)) {
    out.grad = tape.arena().alloc(pre.rows(), pre.cols());
    if (pre.needs_grad()) n.add_write(pre.grad, true);
    if (b.needs_grad()) n.add_write(b.grad, true);
    n.out = out;
    tape.record(n);
  }
  return out;
}

void check_bias(const Var& b, int cols) {
  ZS_CHECK(b.rows() == 1 && b.cols() == cols, "bias_act: bias ", b.rows(), "x", b.cols(),
           " for ", cols, " columns");
}

}  // namespace

Var matmul(Tape& tape, std::initializer_list<Var> parts, const Var& w) {
  return matmul_parts(tape, parts, w, nullptr, Act::None);
}

Var bias_act(Tape& tape, const Var& y, const Var& b, Act act) {
  check_bias(b, y.cols());
  tape.backend().bias_act_forward(y.value, b.value, act);
  return record_bias_act(tape, y, b, act);
}

Var dense(Tape& tape, const Var& x, const Var& w, const Var& b, Act act) {
  check_bias(b, w.cols());
  return record_bias_act(tape, matmul_parts(tape, {x}, w, &b, act), b, act);
}

Var dense2(Tape& tape, const Var& x1, const Var& x2, const Var& w, const Var& b, Act act) {
  check_bias(b, w.cols());
  return record_bias_act(tape, matmul_parts(tape, {x1, x2}, w, &b, act), b, act);
}

Var add_tiled(Tape& tape, const Var& a, const Var& b) {
  ZS_CHECK(a.cols() == b.cols() && b.rows() > 0 && a.rows() % b.rows() == 0, "add_tiled: ", a.rows(),
           "x", a.cols(), " + tiles of ", b.rows(), "x", b.cols());
  Node n;
  n.backward = add_tiled_backward;
  n.in[0] = a;
  n.in[1] = b;
  n.n_in = 2;
  const bool record = should_record(tape, n);
  for (int r = 0; r < a.rows(); r += b.rows()) tape.backend().axpy(a.value.row_block(r, b.rows()), 1.f, b.value);
  Var out{a.value, Tensor()};
  if (record) {
    out.grad = tape.arena().alloc(a.rows(), a.cols());
    if (a.needs_grad()) n.add_write(a.grad, true);
    if (b.needs_grad()) n.add_write(b.grad, true);  // the first tile's write; the others add
    n.out = out;
    tape.record(n);
  }
  return out;
}

Var reparam(Tape& tape, const Var& h, const Tensor& eps) {
  ZS_CHECK(h.cols() == 2 * eps.cols && h.rows() == eps.rows, "reparam: h ", h.rows(), "x", h.cols(),
           " with noise ", eps.rows, "x", eps.cols);
  Node n;
  n.backward = reparam_backward_node;
  n.in[0] = h;
  n.n_in = 1;
  n.aux = eps;
  const bool record = should_record(tape, n);
  Var c = tape.new_var(eps.rows, eps.cols, record);
  tape.backend().reparam_forward(h.value, eps, c.value);
  if (record) {
    add_accumulating_writes(n);
    n.out = c;
    tape.record(n);
  }
  return c;
}

Var slice_rows(const Var& x, int first, int n) {
  return Var{x.value.row_block(first, n), x.needs_grad() ? x.grad.row_block(first, n) : Tensor()};
}

Var slice_cols(const Var& x, int first, int n) {
  return Var{x.value.col_block(first, n), x.needs_grad() ? x.grad.col_block(first, n) : Tensor()};
}

Var concat_cols(Tape& tape, const Var& a, const Var& b) {
  ZS_CHECK(a.rows() == b.rows(), "concat_cols: ", a.rows(), " vs ", b.rows(), " rows");
  Node n;
  n.backward = concat_cols_backward;
  n.in[0] = a;
  n.in[1] = b;
  n.n_in = 2;
  const bool record = should_record(tape, n);
  Var out = tape.new_var(a.rows(), a.cols() + b.cols(), record);
  tape.backend().copy(out.value.col_block(0, a.cols()), a.value);
  tape.backend().copy(out.value.col_block(a.cols(), b.cols()), b.value);
  if (record) {
    for (int k = 0; k < 2; ++k)
      if (n.in[k].needs_grad()) n.add_write(n.in[k].grad, true);
    n.out = out;
    tape.record(n);
  }
  return out;
}

Var concat_rows(Tape& tape, std::initializer_list<Var> parts) {
  ZS_CHECK(parts.size() >= 1 && parts.size() <= static_cast<size_t>(kMaxTerms), "concat_rows parts: ", parts.size());
  const int cols = parts.begin()->cols();
  int rows = 0;
  Node n;
  n.backward = concat_rows_backward;
  for (const Var& x : parts) {
    ZS_CHECK(x.cols() == cols, "concat_rows: ", cols, " vs ", x.cols(), " columns");
    rows += x.rows();
    n.in[n.n_in++] = x;
  }
  const bool record = should_record(tape, n);
  Var out = tape.new_var(rows, cols, record);
  int row = 0;
  for (const Var& x : parts) {
    tape.backend().copy(out.value.row_block(row, x.rows()), x.value);
    row += x.rows();
  }
  if (record) {
    for (int k = 0; k < n.n_in; ++k)
      if (n.in[k].needs_grad()) n.add_write(n.in[k].grad, true);
    n.out = out;
    tape.record(n);
  }
  return out;
}

namespace {
// Shared shape of the scalar-valued ops: one or two inputs, a 1x1 output.
template <typename Forward>
Var scalar_op(Tape& tape, Node::BackwardFn backward, std::initializer_list<Var> inputs,
              Forward&& forward) {
  Node n;
  n.backward = backward;
  for (const Var& v : inputs) n.in[n.n_in++] = v;
  const bool record = should_record(tape, n);
  Var out = scalar_output(tape, record);
  forward(out.value);
  if (record) {
    add_accumulating_writes(n);
    n.out = out;
    tape.record(n);
  }
  return out;
}
}  // namespace

Var kl_published(Tape& tape, const Var& h) {
  ZS_CHECK(h.cols() % 2 == 0, "kl: [mu | log_sigma] has an odd width ", h.cols());
  return scalar_op(tape, kl_backward_node, {h}, [&](Tensor out) { tape.backend().kl_forward(h.value, out); });
}

Var l1_rows(Tape& tape, const Var& x, const Var& v) {
  ZS_CHECK(x.value.same_shape(v.value), "l1: ", x.rows(), "x", x.cols(), " vs ", v.rows(), "x", v.cols());
  return scalar_op(tape, l1_backward_node, {x, v},
                   [&](Tensor out) { tape.backend().l1_forward(x.value, v.value, out); });
}

Var mean(Tape& tape, const Var& x) {
  return scalar_op(tape, mean_backward_node, {x}, [&](Tensor out) { tape.backend().mean_forward(x.value, out); });
}

Var cosine_rows(Tape& tape, const Var& a, const Var& b) {
  ZS_CHECK(a.value.same_shape(b.value), "cosine: ", a.rows(), "x", a.cols(), " vs ", b.rows(), "x", b.cols());
  return scalar_op(tape, cosine_backward_node, {a, b},
                   [&](Tensor out) { tape.backend().cosine_mean_forward(a.value, b.value, out); });
}

Var softplus(Tape& tape, const Var& x) {
  Node n;
  n.backward = softplus_backward_node;
  n.in[0] = x;
  n.n_in = 1;
  const bool record = should_record(tape, n);
  Var out = tape.new_var(x.rows(), x.cols(), record);
  tape.backend().softplus_forward(x.value, out.value);
  if (record) {
    add_accumulating_writes(n);
    n.out = out;
    tape.record(n);
  }
  return out;
}

Var combine(Tape& tape, std::initializer_list<Var> scalars, std::initializer_list<float> weights,
            float constant) {
  ZS_CHECK(scalars.size() == weights.size() && scalars.size() <= static_cast<size_t>(kMaxTerms),
           "combine: ", scalars.size(), " scalars, ", weights.size(), " weights");
  Node n;
  n.backward = combine_backward_node;
  ScalarTerms terms;
  terms.constant = constant;
  auto w = weights.begin();
  for (const Var& s : scalars) {
    check_scalar(s, "combine");
    n.in[n.n_in] = s;
    n.weight[n.n_in] = *w;
    terms.value[terms.n] = s.value.data;
    terms.weight[terms.n] = *w;
    ++terms.n;
    ++n.n_in;
    ++w;
  }
  const bool record = should_record(tape, n);
  Var out = scalar_output(tape, record);
  tape.backend().combine_forward(terms, out.value);
  if (record) {
    add_accumulating_writes(n);
    n.out = out;
    tape.record(n);
  }
  return out;
}

}  // namespace ops
}  // namespace zscrgan
