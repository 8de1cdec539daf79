#include "autograd/tape.h"

#include <algorithm>

namespace zscrgan {

Var Tape::new_var(int rows, int cols, bool with_grad) {
  Var v;
  v.value = arena_.alloc(rows, cols);
  if (with_grad && recording_) v.grad = arena_.alloc(rows, cols);
  return v;
}

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

// Regions are views: (data, rows, cols, ld). Two views compare as rectangles in a common row
// stride; views whose strides cannot be reconciled but whose address ranges meet count as a
// partial cover, which only ever costs a zero-fill.
Tape::Cover Tape::coverage(const Tensor& r) {
  if (r.rows == 0 || r.cols == 0) return Cover::Full;
  const float* r_begin = r.data;
  const float* r_end = r.data + static_cast<int64_t>(r.rows - 1) * r.ld + r.cols;
  rects_.clear();
  for (const Tensor& q : written_) {
    if (q.rows == 0 || q.cols == 0) continue;
    const float* q_begin = q.data;
    const float* q_end = q.data + static_cast<int64_t>(q.rows - 1) * q.ld + q.cols;
    if (q_end <= r_begin || r_end <= q_begin) continue;
    const int64_t d = q_begin - r_begin;
    Rect x;
    if (r.rows == 1 && q.rows == 1) {  // two address intervals
      x = Rect{0, 1, std::max<int64_t>(d, 0), std::min<int64_t>(d + q.cols, r.cols)};
    } else {
      // A common row stride (a single row fits any); views of other strides that meet count
      // as a partial cover.
      if (r.rows > 1 && q.rows > 1 && r.ld != q.ld) return Cover::Partial;
      const int64_t ld = r.rows > 1 ? r.ld : q.ld;
      if (r.cols > ld) return Cover::Partial;
      const int64_t qr0 = floor_div(d, ld), qc0 = d - qr0 * ld;
      if (qc0 + q.cols > ld) return Cover::Partial;  // wraps around rows of the common stride
      x = Rect{std::max<int64_t>(qr0, 0), std::min<int64_t>(qr0 + q.rows, r.rows),
               std::max<int64_t>(qc0, 0), std::min<int64_t>(qc0 + q.cols, r.cols)};
    }
    if (x.r0 >= x.r1 || x.c0 >= x.c1) continue;  // e.g. another column block of the same rows
    rects_.push_back(x);
  }
  if (rects_.empty()) return Cover::None;
  // Full when every cell of the grid the rectangles' edges cut r into lies in one of them.
  row_cuts_.clear();
  col_cuts_.clear();
  row_cuts_.push_back(0);
  row_cuts_.push_back(r.rows);
  col_cuts_.push_back(0);
  col_cuts_.push_back(r.cols);
  for (const Rect& x : rects_) {
    row_cuts_.push_back(x.r0);
    row_cuts_.push_back(x.r1);
    col_cuts_.push_back(x.c0);
    col_cuts_.push_back(x.c1);
  }
  std::sort(row_cuts_.begin(), row_cuts_.end());
  row_cuts_.erase(std::unique(row_cuts_.begin(), row_cuts_.end()), row_cuts_.end());
  std::sort(col_cuts_.begin(), col_cuts_.end());
  col_cuts_.erase(std::unique(col_cuts_.begin(), col_cuts_.end()), col_cuts_.end());
  for (size_t i = 0; i + 1 < row_cuts_.size(); ++i)
    for (size_t j = 0; j + 1 < col_cuts_.size(); ++j) {
      const int64_t rr = row_cuts_[i], cc = col_cuts_[j];
      bool in = false;
      for (const Rect& x : rects_)
        if (rr >= x.r0 && rr < x.r1 && cc >= x.c0 && cc < x.c1) {
          in = true;
          break;
        }
      if (!in) return Cover::Partial;
    }
  return Cover::Full;
}

// Walks the nodes in the order backward() will run them. A node reads its output's gradient:
// a region not wholly written by then is zero-filled first. Each write is an overwrite when
// nothing before it touched its region (and the op has an overwriting form), an accumulation
// when its region is wholly written already, and otherwise an accumulation into a region
// zero-filled first. Zero-filling at the start is safe for any region: the writes planned as
// overwrites before it were free to store over zeros.
void Tape::plan_writes(const Var& loss, const std::vector<Tensor>& defined) {
  written_.clear();
  prefill_.clear();
  written_.push_back(loss.grad);
  auto prefill = [&](const Tensor& t) {
    prefill_.push_back(t);
    written_.push_back(t);
  };
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    Node& n = *it;
    if (coverage(n.out.grad) != Cover::Full) prefill(n.out.grad);
    n.overwrite = 0;
    for (int i = 0; i < n.n_writes; ++i) {
      const Tensor& w = n.writes[i];
      const Cover c = coverage(w);
      if (c == Cover::None && ((n.can_overwrite >> i) & 1u))
        n.overwrite |= 1u << i;
      else if (c != Cover::Full)
        prefill(w);
      written_.push_back(w);
    }
  }
  for (const Tensor& t : defined)
    if (coverage(t) != Cover::Full) prefill(t);
}

namespace {

const float* end_of(const Tensor& t) {
  return t.data + static_cast<int64_t>(t.rows - 1) * t.ld + t.cols;
}
// Whether two views' address ranges meet (a superset of their elements meeting).
bool ranges_meet(const Tensor& a, const Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  return a.data < end_of(b) && b.data < end_of(a);
}

}  // namespace

// A write is deferred when it is a product the plan made an overwrite, lies in `within`, and
// no other write and no node's output gradient (what backwards read) meets its bytes: then
// the backward neither needs it nor would change it after the write.
void Tape::plan_deferrals(const Tensor& within, std::vector<DeferredProduct>* deferred) {
  deferred->clear();
  for (Node& n : nodes_) n.deferred = 0;
  if (within.numel() == 0) return;
  ZS_CHECK(within.contiguous(), "backward: the region to defer gradients within must be contiguous");
  for (Node& n : nodes_)
    for (int i = 0; i < n.n_writes; ++i) {
      const Tensor& w = n.writes[i];
      if (!((n.is_product >> i) & 1u) || !n.overwrites(i) || !w.contiguous() || w.numel() == 0) continue;
      if (w.data < within.data || end_of(w) > end_of(within)) continue;
      bool alone = true;
      for (const Node& o : nodes_) {
        if (ranges_meet(w, o.out.grad)) alone = false;
        for (int j = 0; j < o.n_writes && alone; ++j)
          if ((&o != &n || j != i) && ranges_meet(w, o.writes[j])) alone = false;
        if (!alone) break;
      }
      if (!alone) continue;
      n.deferred |= 1u << i;
      deferred->push_back(DeferredProduct{n.product_x[i], n.product_dy[i], w});
    }
}

void Tape::backward(const Var& loss, const std::vector<Tensor>& defined) {
  backward(loss, defined, Tensor(), nullptr);
}

void Tape::backward(const Var& loss, const std::vector<Tensor>& defined, const Tensor& within,
                    std::vector<DeferredProduct>* deferred) {
  ZS_CHECK(loss.value.rows == 1 && loss.value.cols == 1, "backward from a ", loss.value.rows, "x",
           loss.value.cols, " tensor; a scalar loss is expected");
  ZS_CHECK(loss.needs_grad(), "backward from a loss that depends on nothing trainable");
  plan_writes(loss, defined);
  if (deferred != nullptr) {
    plan_deferrals(within, deferred);
  } else {
    for (Node& n : nodes_) n.deferred = 0;
  }
  for (const Tensor& t : prefill_) backend_.fill(t, 0.f);
  backend_.fill(loss.grad, 1.f);
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) it->backward(backend_, *it);
}

}  // namespace zscrgan
