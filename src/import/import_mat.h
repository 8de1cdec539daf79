// Internal: reading MATLAB .mat files (v4, v5 and v7.3/HDF5) through matio, for the importers;
// a build without matio opens no file and says so. Every failure is one line naming the file
// and the variable.
//
// MATLAB stores matrices column-major: element (r, c) of an R x C variable is at c * R + r.
// A "D x N, one column per image" matrix is therefore already N rows of D contiguous values,
// while an "N x D, one row per image" matrix has to be transposed into our row-major layout.
#ifndef ZSCRGAN_SRC_IMPORT_MAT_H
#define ZSCRGAN_SRC_IMPORT_MAT_H

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "formats/npy.h"

namespace zscrgan {
namespace detail {

struct MatVarData;  // the matio variable (or its densified copy), hidden from callers

// One real numeric 2-D variable (double, single, any integer class, logical; sparse is
// densified). Higher ranks are accepted only when every dimension past the second is 1.
class MatMatrix {
 public:
  MatMatrix(MatMatrix&&) noexcept;
  MatMatrix& operator=(MatMatrix&&) noexcept;
  ~MatMatrix();

  const std::string& file() const { return file_; }
  const std::string& name() const { return name_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  std::string shape() const;        // "2048 x 37322"
  std::string class_name() const;   // "double", "single", "uint16", ...

  // The variable must be a vector (1 x n, n x 1, or any empty shape); every value must be an
  // integer. Returns the values as stored (no change of base).
  std::vector<int64_t> integer_vector() const;

  // Row-major float32 copy of selected columns: output row k = column cols[k] (0-based).
  // This is the layout of a "one column per item" variable; no transpose is needed.
  HostMatrix columns_as_rows(const std::vector<int64_t>& cols) const;
  // Row-major float32 copy of selected rows: output row k = row rows[k] (0-based); a
  // transpose of the column-major storage.
  HostMatrix rows_as_rows(const std::vector<int64_t>& rows) const;
  // Every row, in order.
  HostMatrix all_rows() const;

 private:
  friend class MatFile;
  MatMatrix(std::string file, std::string name, std::unique_ptr<MatVarData> data);

  std::string file_;
  std::string name_;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  std::unique_ptr<MatVarData> data_;
};

class MatFile {
 public:
  // Fails "<path>: not found" or "<path>: cannot open as a MAT file ..." (without matio:
  // "<path>: cannot read .mat files: this build has no matio ...").
  explicit MatFile(const std::string& path);
  MatFile(const MatFile&) = delete;
  MatFile& operator=(const MatFile&) = delete;
  ~MatFile();

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return names_.count(name) != 0; }
  // Fails naming the file and the variable when it is absent or not a real numeric matrix.
  MatMatrix read(const std::string& name) const;
  // The names in the file, comma-separated, for messages.
  std::string listing() const;

 private:
  // Fills names_; fails when matio reports a problem or a declared size passes the file's end.
  void list_variables();

  std::string path_;
  void* mat_ = nullptr;  // mat_t*
  std::set<std::string> names_;
};

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_IMPORT_MAT_H
