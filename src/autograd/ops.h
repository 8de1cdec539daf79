// Differentiable ops on the tape. Each computes its forward on the backend and records its
// backward when an input needs a gradient. Shapes are checked before dispatching.
#ifndef ZSCRGAN_OPS_H
#define ZSCRGAN_OPS_H

#include <initializer_list>

#include "autograd/tape.h"

namespace zscrgan {
namespace ops {

// y = sum_k x_k W_k, where W (sum_k cols(x_k) x out) is split by rows into one block per input
// part: a dense layer over the concatenation [x_1, ..., x_n] without materialising it.
Var matmul(Tape& tape, std::initializer_list<Var> parts, const Var& w);
// y = act(y + b), in place over y's value (the tape keeps y's pre-activation gradient apart).
Var bias_act(Tape& tape, const Var& y, const Var& b, Act act);
// act(x W + b), and its concatenation-free form act([x1, x2] W + b).
Var dense(Tape& tape, const Var& x, const Var& w, const Var& b, Act act);
Var dense2(Tape& tape, const Var& x1, const Var& x2, const Var& w, const Var& b, Act act);

// c = h[:, :E] + exp(h[:, E:]) * eps, with eps a constant (B x E) noise tensor.
Var reparam(Tape& tape, const Var& h, const Tensor& eps);

// a + [b; b; ...; b] (b tiled over a's rows, a.rows a multiple of b.rows), in place over a's
// value. Lets a stack of k critic passes share one text GEMM of B rows instead of k.
Var add_tiled(Tape& tape, const Var& a, const Var& b);

// Views: no copy and no node; the gradient is the matching view of the parent's gradient.
Var slice_rows(const Var& x, int first, int n);
Var slice_cols(const Var& x, int first, int n);
// Copies.
Var concat_cols(Tape& tape, const Var& a, const Var& b);
Var concat_rows(Tape& tape, std::initializer_list<Var> parts);

// Scalars (1x1).
Var kl_published(Tape& tape, const Var& h);               // the published KL term of [mu | log_sigma]
Var l1_rows(Tape& tape, const Var& x, const Var& v);      // mean_b sum_d |x - v|
Var mean(Tape& tape, const Var& x);                       // mean of all elements
Var cosine_rows(Tape& tape, const Var& a, const Var& b);  // mean_b cos(a_b, b_b)
Var softplus(Tape& tape, const Var& x);                   // elementwise log(1 + exp(x))
// sum_i w_i s_i + constant over 1x1 scalars.
Var combine(Tape& tape, std::initializer_list<Var> scalars, std::initializer_list<float> weights,
            float constant = 0.f);

}  // namespace ops
}  // namespace zscrgan

#endif  // ZSCRGAN_OPS_H
