// NumPy .npy files (format versions 1.0-3.0): the interchange format's arrays.
// Readers validate everything against the file (magic, header, dtype, order, shape, size) and
// fail with one line naming the file and what is wrong.
#ifndef ZSCRGAN_NPY_H
#define ZSCRGAN_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace zscrgan {

// A dense row-major float32 matrix in host memory.
struct HostMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;  // rows * cols
  const float* row(int64_t r) const { return data.data() + r * cols; }
  float* row(int64_t r) { return data.data() + r * cols; }
};

// 2-D little-endian float32 or float64, C order; float64 is converted to float32.
HostMatrix read_npy_matrix(const std::string& path);
// 1-D little-endian int32 or int64.
std::vector<int64_t> read_npy_labels(const std::string& path);

// Writers produce version 1.0 files, '<f4' 2-D and '<i8' 1-D.
void write_npy_matrix(const std::string& path, const HostMatrix& m);
void write_npy_labels(const std::string& path, const std::vector<int64_t>& labels);

}  // namespace zscrgan

#endif  // ZSCRGAN_NPY_H
