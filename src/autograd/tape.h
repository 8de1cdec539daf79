// A small reverse-mode autograd tape.
// Forward ops (ops.h) compute on the backend and, when any input needs a gradient and the tape
// is recording, append a Node: the op's inputs, output, the gradient regions its backward
// writes, and a plain function pointer that writes the input gradients. backward() walks the
// nodes in reverse. Nodes are fixed-size and the tape's lists keep their capacity, so a
// steady-state step allocates nothing.
//
// Gradient buffers are not zero-filled. Before any backward call runs, backward() plans, from
// the recorded nodes alone, how each write lands: the first writer of a region overwrites it
// (a GEMM with beta = 0, a plain store), later writers of it accumulate, and a region that is
// read or accumulated into before it is wholly written (or, for the `defined` gradients, never
// wholly written) is zero-filled first. The plan depends only on the program, never on data,
// so a captured step replays the same calls, and it gives the bits adding into zeros would
// (0 + x == x).
#ifndef ZSCRGAN_TAPE_H
#define ZSCRGAN_TAPE_H

#include <cstdint>
#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"
#include "core/error.h"

namespace zscrgan {

// A value and, when it needs one, its gradient (same shape; empty grad = no gradient).
struct Var {
  Tensor value;
  Tensor grad;
  bool needs_grad() const { return !grad.empty(); }
  int rows() const { return value.rows; }
  int cols() const { return value.cols; }
};

// A variable that never receives a gradient (data, noise, frozen inputs).
inline Var constant(const Tensor& t) { return Var{t, Tensor()}; }

// Gradient regions one node's backward may write (a matmul of kMaxTerms - 1 parts: 2 per part).
constexpr int kMaxWrites = 2 * kMaxTerms;

struct Node {
  using BackwardFn = void (*)(Backend&, const Node&);
  BackwardFn backward = nullptr;
  // The gradient regions the backward writes, in the order it writes them (add_write), and
  // whether each write has an overwriting form; `overwrite` is the tape's plan: bit i set =
  // write i stores instead of adding.
  Tensor writes[kMaxWrites];
  int n_writes = 0;
  uint32_t can_overwrite = 0;
  uint32_t overwrite = 0;
  // Writes that are a product x^T dy (a matmul's weight gradient), with their factors, and
  // those the tape planned to hand to the caller instead of running (Tape::backward).
  Tensor product_x[kMaxWrites], product_dy[kMaxWrites];
  uint32_t is_product = 0;
  uint32_t deferred = 0;
  bool overwrites(int i) const { return (overwrite >> i) & 1u; }
  bool defers(int i) const { return (deferred >> i) & 1u; }
  GradWrite write_mode(int i) const { return overwrites(i) ? GradWrite::Overwrite : GradWrite::Accumulate; }
  void add_write(const Tensor& region, bool has_overwrite) {
    ZS_CHECK(n_writes < kMaxWrites, "a tape node writes more than ", kMaxWrites, " gradients");
    if (has_overwrite) can_overwrite |= 1u << n_writes;
    writes[n_writes++] = region;
  }
  // A write of region = x^T dy (+= or =).
  void add_product_write(const Tensor& region, const Tensor& x, const Tensor& dy) {
    product_x[n_writes] = x;
    product_dy[n_writes] = dy;
    is_product |= 1u << n_writes;
    add_write(region, true);
  }
  Var in[kMaxTerms];
  int n_in = 0;
  Var out;
  Tensor aux;                   // op-specific saved tensor (e.g. the noise of a reparam)
  float weight[kMaxTerms] = {};  // op-specific scalars
  Act act = Act::None;
};

class Tape {
 public:
  Tape(Backend& backend, Arena& arena) : backend_(backend), arena_(arena) {
    nodes_.reserve(256);
    written_.reserve(1024);
    prefill_.reserve(256);
    rects_.reserve(1024);
    row_cuts_.reserve(2048);
    col_cuts_.reserve(2048);
  }

  Backend& backend() { return backend_; }
  Arena& arena() { return arena_; }
  bool recording() const { return recording_; }

  // A fresh output; with a gradient buffer (not zero-filled: see above) when `with_grad` and
  // the tape is recording.
  Var new_var(int rows, int cols, bool with_grad);
  void record(const Node& n) { nodes_.push_back(n); }

  // Seeds d(loss) = 1 and runs every node's backward in reverse order. Every gradient a node
  // writes holds, afterwards, the sum of what its writers contributed (whatever the buffer
  // held before); each tensor in `defined` (e.g. every parameter gradient of the group being
  // trained) holds its gradient even where no node wrote (zero there). Other gradient bytes no
  // node writes are left as they were.
  void backward(const Var& loss, const std::vector<Tensor>& defined = {});

  // A gradient the backward left to its caller: grad = x^T dy, with x and dy as the backward
  // left them (they stay valid until the arena's reset).
  struct DeferredProduct {
    Tensor x, dy, grad;
  };
  // backward(), except that every weight gradient lying in `within` (contiguous) that is a
  // product x^T dy and the only write to its bytes in the whole program, so that nothing
  // reads it before the backward ends, is not computed; it is listed in *deferred instead
  // (cleared first; keep its capacity), for the optimizer to form and apply in one pass
  // (Backend::weight_grad_rmsprop_update, weight_grad_adam_update). Its bytes in `defined` hold
  // no gradient afterwards.
  void backward(const Var& loss, const std::vector<Tensor>& defined, const Tensor& within,
                std::vector<DeferredProduct>* deferred);
  // Forgets the nodes (keeps capacity). Call with the arena's reset.
  void clear() { nodes_.clear(); }
  size_t size() const { return nodes_.size(); }

  // Scope in which nothing is recorded (frozen networks whose inputs need no gradient).
  class NoRecord {
   public:
    explicit NoRecord(Tape& t) : tape_(t), previous_(t.recording_) { t.recording_ = false; }
    ~NoRecord() { tape_.recording_ = previous_; }
    NoRecord(const NoRecord&) = delete;
    NoRecord& operator=(const NoRecord&) = delete;

   private:
    Tape& tape_;
    bool previous_;
  };

 private:
  enum class Cover { None, Partial, Full };
  // How much of `r` the regions written so far (written_) cover.
  Cover coverage(const Tensor& r);
  void plan_writes(const Var& loss, const std::vector<Tensor>& defined);
  void plan_deferrals(const Tensor& within, std::vector<DeferredProduct>* deferred);

  Backend& backend_;
  Arena& arena_;
  std::vector<Node> nodes_;
  bool recording_ = true;
  // backward()'s plan: the regions written so far in backward order, those to zero-fill first,
  // and coverage()'s scratch (all keep their capacity).
  std::vector<Tensor> written_, prefill_;
  struct Rect {
    int64_t r0, r1, c0, c1;
  };
  std::vector<Rect> rects_;
  std::vector<int64_t> row_cuts_, col_cuts_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_TAPE_H
