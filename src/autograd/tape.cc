#include "autograd/tape.h"

namespace zscrgan {

Var Tape::new_var(int rows, int cols, bool with_grad) {
  Var v;
  v.value = arena_.alloc(rows, cols);
  if (with_grad && recording_) {
    v.grad = arena_.alloc(rows, cols);
    backend_.fill(v.grad, 0.f);
  }
  return v;
}

void Tape::backward(const Var& loss) {
  ZS_CHECK(loss.value.rows == 1 && loss.value.cols == 1, "backward from a ", loss.value.rows, "x",
           loss.value.cols, " tensor; a scalar loss is expected");
  ZS_CHECK(loss.needs_grad(), "backward from a loss that depends on nothing trainable");
  backend_.fill(loss.grad, 1.f);
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) it->backward(backend_, *it);
}

}  // namespace zscrgan
