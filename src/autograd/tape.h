// A small reverse-mode autograd tape.
// Forward ops (ops.h) compute on the backend and, when any input needs a gradient and the tape
// is recording, append a Node: the op's inputs, output and a plain function pointer that
// accumulates the input gradients. backward() walks the nodes in reverse. Nodes are fixed-size
// and the node list keeps its capacity, so a steady-state step allocates nothing.
#ifndef ZSCRGAN_TAPE_H
#define ZSCRGAN_TAPE_H

#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"

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

struct Node {
  using BackwardFn = void (*)(Backend&, const Node&);
  BackwardFn backward = nullptr;
  Var in[kMaxTerms];
  int n_in = 0;
  Var out;
  Tensor aux;                   // op-specific saved tensor (e.g. the noise of a reparam)
  float weight[kMaxTerms] = {};  // op-specific scalars
  Act act = Act::None;
};

class Tape {
 public:
  Tape(Backend& backend, Arena& arena) : backend_(backend), arena_(arena) { nodes_.reserve(256); }

  Backend& backend() { return backend_; }
  Arena& arena() { return arena_; }
  bool recording() const { return recording_; }

  // A fresh output; with a zeroed gradient when `with_grad` and the tape is recording.
  Var new_var(int rows, int cols, bool with_grad);
  void record(const Node& n) { nodes_.push_back(n); }

  // Seeds d(loss) = 1 and runs every node's backward in reverse order.
  void backward(const Var& loss);
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
  Backend& backend_;
  Arena& arena_;
  std::vector<Node> nodes_;
  bool recording_ = true;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_TAPE_H
