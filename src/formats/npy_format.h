// Internal: the .npy header reader and writer shared by the whole-file reader (npy.cc) and the
// streaming row reader and writer (npy_stream.cc), so that both validate files identically.
#ifndef ZSCRGAN_SRC_NPY_FORMAT_H
#define ZSCRGAN_SRC_NPY_FORMAT_H

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "core/error.h"

namespace zscrgan {
namespace detail {

enum class NpyKind { kFloat, kInt, kOther };

struct NpyDtype {
  std::string descr;  // as written in the header
  NpyKind kind = NpyKind::kOther;
  int size = 0;       // bytes per element
  std::string name() const {
    if (kind == NpyKind::kFloat && size == 4) return "float32";
    if (kind == NpyKind::kFloat && size == 8) return "float64";
    if (kind == NpyKind::kInt && size == 4) return "int32";
    if (kind == NpyKind::kInt && size == 8) return "int64";
    return in_quotes(descr);
  }
};

struct NpyHeader {
  NpyDtype dtype;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;  // bytes from the start of the file to the array data
  uint64_t file_size = 0;
};

bool host_is_little_endian();
// "(3, 4)", "(5,)", as numpy writes shapes.
std::string npy_shape_text(const std::vector<int64_t>& shape);

// Reads and validates the preamble and header dict (magic, version, lengths, keys, dtype
// syntax, C order); fails with one line naming `path`.
NpyHeader read_npy_header(std::istream& in, const std::string& path);
// Checks that the bytes after the header hold exactly the header's shape; returns the
// element count.
int64_t check_npy_size(const NpyHeader& h, const std::string& path);
// Requires a 2-D float32 or float64 array (features), with the readers' messages.
void check_npy_feature_matrix(const NpyHeader& h, const std::string& path);
// A float64 feature value as float32. A finite value beyond float32's range is refused by its
// row and column (element = row * cols + column), rather than becoming an inf the file lacks.
float narrow_npy_feature(double v, const std::string& path, uint64_t element, int64_t cols);
// The preamble and padded header dict of a version 1.0, C-order array.
std::string npy_header_bytes(const std::string& descr, const std::vector<int64_t>& shape);

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_NPY_FORMAT_H
