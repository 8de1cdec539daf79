// A non-owning view of a row-major float32 matrix on one device.
// Everything in ZSCRGAN is a matrix (a batch of rows) or a 1x1 scalar, so a tensor is
// (rows, cols) with a row stride `ld` >= cols: column blocks (mu / log_sigma halves) and
// row blocks (the stacked critic batch) are views, never copies.
#ifndef ZSCRGAN_TENSOR_H
#define ZSCRGAN_TENSOR_H

#include <cstddef>
#include <cstdint>

#include "core/error.h"

namespace zscrgan {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

struct Tensor {
  float* data = nullptr;
  int rows = 0;
  int cols = 0;
  int ld = 0;  // elements between the starts of consecutive rows
  Device device = Device::CPU;

  Tensor() = default;
  Tensor(float* d, int r, int c, Device dev) : data(d), rows(r), cols(c), ld(c), device(dev) {}
  Tensor(float* d, int r, int c, int stride, Device dev)
      : data(d), rows(r), cols(c), ld(stride), device(dev) {}

  bool empty() const { return data == nullptr; }
  size_t numel() const { return static_cast<size_t>(rows) * static_cast<size_t>(cols); }
  bool contiguous() const { return ld == cols || rows <= 1; }
  bool same_shape(const Tensor& o) const { return rows == o.rows && cols == o.cols; }

  Tensor row_block(int first, int n) const {
    ZS_CHECK(first >= 0 && n >= 0 && first + n <= rows, "row block [", first, ", ", first + n,
             ") of a ", rows, "-row tensor");
    return Tensor(data + static_cast<size_t>(first) * ld, n, cols, ld, device);
  }
  Tensor col_block(int first, int n) const {
    ZS_CHECK(first >= 0 && n >= 0 && first + n <= cols, "column block [", first, ", ", first + n,
             ") of a ", cols, "-column tensor");
    return Tensor(data + first, rows, n, ld, device);
  }
};

// Row indices for gathers (batch sampling), on the same device as the data they index.
// Replayed (graph-captured) steps read a different slice each time: data + (*step) *
// step_stride, with the step counter in the backend's memory. Eager code leaves step null.
struct IndexSpan {
  const int32_t* data = nullptr;
  int n = 0;
  const int64_t* step = nullptr;
  int64_t step_stride = 0;
};
// Call where the indices are read (inside the kernel on CUDA).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline const int32_t* resolve_indices(const IndexSpan& s) {
  return s.step != nullptr ? s.data + (*s.step) * s.step_stride : s.data;
}

}  // namespace zscrgan

#endif  // ZSCRGAN_TENSOR_H
