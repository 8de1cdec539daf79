// Memory carved from large backend allocations.
// - DeviceBlock: fixed storage allocated once (parameters, gradients and optimizer state;
//   evaluation and inference buffers).
// - Arena: per-step scratch (activations, their gradients), reset after each step. It grows
//   only while warming up: when a step needed more than one chunk, reset() replaces the chunks
//   by one of the high-water size (plus a quarter), so a steady-state step allocates nothing.
#ifndef ZSCRGAN_ARENA_H
#define ZSCRGAN_ARENA_H

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace zscrgan {

constexpr size_t kAllocAlignment = 256;  // bytes; keeps every tensor GEMM- and vector-aligned

inline size_t align_up(size_t n, size_t a = kAllocAlignment) { return (n + a - 1) / a * a; }

class Arena {
 public:
  Arena(Backend& backend, size_t initial_bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor alloc(int rows, int cols);
  void* alloc_bytes(size_t bytes);
  // Invalidates everything allocated since the last reset.
  void reset();
  // Makes sure the next `bytes` of allocations need no new backend allocation (one is made now
  // if needed): a captured step must not allocate while it is being recorded.
  void ensure_free(size_t bytes);
  size_t bytes_since_reset() const { return step_bytes_; }

  size_t capacity_bytes() const;
  size_t high_water_bytes() const { return high_water_; }
  // Backend allocations made so far (warm-up included); constant in steady state.
  int64_t backend_allocations() const { return backend_allocations_; }
  // Changes whenever a chunk is added or the chunks are replaced: the addresses a step is
  // handed are then not reproduced, so a captured step that used them must be captured again.
  int64_t generation() const { return backend_allocations_; }
  Backend& backend() { return backend_; }

 private:
  struct Chunk {
    char* base;
    size_t size;
  };
  void add_chunk(size_t min_bytes);

  Backend& backend_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;     // index of the chunk being filled
  size_t used_ = 0;        // bytes used in the current chunk
  size_t step_bytes_ = 0;  // bytes handed out since the last reset
  size_t high_water_ = 0;
  int64_t backend_allocations_ = 0;
};

// Fixed-size storage for tensors allocated once (the model's parameter groups, the evaluator's,
// encoder's and inference's buffers); tensors are taken in order, each 256-byte aligned.
class DeviceBlock {
 public:
  DeviceBlock(Backend& backend, size_t bytes);
  ~DeviceBlock();
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  Tensor take(int rows, int cols);  // throws when the block is exhausted
  size_t used_bytes() const { return used_; }
  size_t size_bytes() const { return size_; }

 private:
  Backend& backend_;
  char* base_ = nullptr;
  size_t size_ = 0;
  size_t used_ = 0;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_ARENA_H
