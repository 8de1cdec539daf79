#include "backend/arena.h"

#include <algorithm>

namespace zscrgan {

Arena::Arena(Backend& backend, size_t initial_bytes) : backend_(backend) {
  if (initial_bytes > 0) add_chunk(initial_bytes);
}

Arena::~Arena() {
  for (const Chunk& c : chunks_) backend_.deallocate(c.base);
}

void Arena::add_chunk(size_t min_bytes) {
  const size_t size = align_up(std::max<size_t>(min_bytes, size_t(1) << 20));
  char* base = static_cast<char*>(backend_.allocate(size));
  ++backend_allocations_;
  chunks_.push_back({base, size});
}

void* Arena::alloc_bytes(size_t bytes) {
  bytes = align_up(std::max<size_t>(bytes, 1));
  ensure_free(bytes);
  void* p = chunks_[current_].base + used_;
  used_ += bytes;
  step_bytes_ += bytes;
  return p;
}

void Arena::ensure_free(size_t bytes) {
  bytes = align_up(std::max<size_t>(bytes, 1));
  // Move past chunks without room; past the last one, grow (warm-up only) by a chunk at least
  // as large as everything used so far this step.
  while (current_ < chunks_.size() && used_ + bytes > chunks_[current_].size) {
    ++current_;
    used_ = 0;
  }
  if (current_ == chunks_.size()) {
    add_chunk(std::max(bytes, step_bytes_ + bytes));
    used_ = 0;
  }
}

Tensor Arena::alloc(int rows, int cols) {
  ZS_CHECK(rows >= 0 && cols >= 0, "arena tensor ", rows, " x ", cols);
  float* p = static_cast<float*>(alloc_bytes(sizeof(float) * static_cast<size_t>(rows) * cols));
  return Tensor(p, rows, cols, backend_.device());
}

void Arena::reset() {
  high_water_ = std::max(high_water_, step_bytes_);
  if (chunks_.size() > 1) {
    // The step did not fit in one chunk: replace all chunks by one that holds the high water.
    for (const Chunk& c : chunks_) backend_.deallocate(c.base);
    chunks_.clear();
    add_chunk(high_water_ + high_water_ / 4);
  }
  current_ = 0;
  used_ = 0;
  step_bytes_ = 0;
}

size_t Arena::capacity_bytes() const {
  size_t total = 0;
  for (const Chunk& c : chunks_) total += c.size;
  return total;
}

DeviceBlock::DeviceBlock(Backend& backend, size_t bytes) : backend_(backend), size_(bytes) {
  base_ = static_cast<char*>(backend_.allocate(std::max<size_t>(bytes, 1)));
}

DeviceBlock::~DeviceBlock() { backend_.deallocate(base_); }

Tensor DeviceBlock::take(int rows, int cols) {
  const size_t bytes = align_up(sizeof(float) * static_cast<size_t>(rows) * cols);
  ZS_CHECK(used_ + bytes <= size_, "device block of ", size_, " bytes exhausted");
  float* p = reinterpret_cast<float*>(base_ + used_);
  used_ += bytes;
  return Tensor(p, rows, cols, backend_.device());
}

}  // namespace zscrgan
