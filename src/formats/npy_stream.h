// Row-range access to 2-D .npy files too large to hold in memory (galleries of millions of
// feature vectors): a reader that fetches any block of rows with pread, and a writer that
// appends blocks of rows. Both validate like read_npy_matrix / write_npy_matrix and fail with
// one line naming the file.
#ifndef ZSCRGAN_NPY_STREAM_H
#define ZSCRGAN_NPY_STREAM_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zscrgan {

class AtomicFile;

// A 2-D little-endian float32 ('<f4') or float64 ('<f8') C-order .npy file, opened once.
// The constructor reads and checks the header and that the file holds exactly rows x cols
// values; rows are read on demand, never the whole file.
class NpyRowReader {
 public:
  explicit NpyRowReader(const std::string& path);
  ~NpyRowReader();
  NpyRowReader(const NpyRowReader&) = delete;
  NpyRowReader& operator=(const NpyRowReader&) = delete;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const std::string& path() const { return path_; }
  // "float32" or "float64": the type stored in the file (rows are always returned as float32).
  const char* dtype_name() const { return elem_size_ == 4 ? "float32" : "float64"; }

  // Rows [first, first + n) into out (n x cols floats, dense); float64 values are rounded to
  // float32. Fails naming the file when the range is outside the array or the file has
  // shrunk since it was opened.
  void read_rows(int64_t first, int64_t n, float* out);

 private:
  void read_bytes(uint64_t offset, uint64_t bytes, void* dst);

  std::string path_;
  int fd_ = -1;
  int64_t rows_ = 0, cols_ = 0;
  int elem_size_ = 4;
  uint64_t data_offset_ = 0;
  std::vector<double> scratch_;  // float64 conversion buffer, bounded (see read_rows)
};

// Writes a 2-D '<f4' .npy file of a size known up front, block of rows by block of rows, into
// a temporary sibling that finish() flushes to disk and renames into place: a file that was not
// finished (an error, a crash) never appears under `path`.
class NpyRowWriter {
 public:
  NpyRowWriter(const std::string& path, int64_t rows, int64_t cols);
  ~NpyRowWriter();  // removes the temporary file when finish() was not reached
  NpyRowWriter(const NpyRowWriter&) = delete;
  NpyRowWriter& operator=(const NpyRowWriter&) = delete;

  // Appends n rows (n x cols floats, dense).
  void write_rows(const float* data, int64_t n);
  // Checks that every row was written, fsyncs and renames into place.
  void finish();
  int64_t rows_written() const { return written_; }

 private:
  std::string path_;
  std::unique_ptr<AtomicFile> file_;  // the temporary sibling, until finish()
  int64_t rows_ = 0, cols_ = 0, written_ = 0;
  std::vector<unsigned char> swap_;  // byte-swapped copy on big-endian hosts only
};

}  // namespace zscrgan

#endif  // ZSCRGAN_NPY_STREAM_H
