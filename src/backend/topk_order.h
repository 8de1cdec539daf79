// The ranking rule of every top-k list (the CPU and CUDA backends' topk_cosine and the merge
// of chunk lists): a candidate ranks higher when its cosine similarity is higher, and among equal
// similarities when its gallery index is lower. Lists are stored best first. An empty slot
// (index -1, score -inf) ranks below every candidate.
#ifndef ZSCRGAN_TOPK_ORDER_H
#define ZSCRGAN_TOPK_ORDER_H

#include <cstdint>
#include <limits>

namespace zscrgan {

constexpr float kEmptyScore = -std::numeric_limits<float>::infinity();
constexpr int64_t kEmptyIndex = -1;

// True when (sa, ia) ranks strictly before (sb, ib); empty slots rank after everything.
inline bool ranks_before(float sa, int64_t ia, float sb, int64_t ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return sa > sb || (sa == sb && ia < ib);
}


}  // namespace zscrgan

#endif  // ZSCRGAN_TOPK_ORDER_H
