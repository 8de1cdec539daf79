#include "formats/npy_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/fileio.h"
#include "npy_format.h"
#include "core/error.h"

namespace zscrgan {
namespace {

// float64 files are converted through a buffer of this many values (1 MiB), so reading a
// block of rows never needs a second block-sized buffer.
constexpr size_t kConvertValues = size_t(1) << 17;

void swap_bytes(void* data, size_t count, int size) {
  auto* p = static_cast<unsigned char*>(data);
  for (size_t i = 0; i < count; ++i) std::reverse(p + i * size, p + (i + 1) * size);
}

}  // namespace

NpyRowReader::NpyRowReader(const std::string& path) : path_(path) {
  detail::NpyHeader h;
  {
    require_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) fail_file(path, ": cannot open: ", std::strerror(errno));
    h = detail::read_npy_header(in, path);
  }
  detail::check_npy_feature_matrix(h, path);
  detail::check_npy_size(h, path);
  rows_ = h.shape[0];
  cols_ = h.shape[1];
  elem_size_ = h.dtype.size;
  data_offset_ = h.data_offset;

  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail_file(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) != h.file_size) {
    ::close(fd_);
    fd_ = -1;
    fail_file(path, ": the file changed while it was being opened");
  }
  // Blocks are read front to back: let the kernel read ahead.
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

NpyRowReader::~NpyRowReader() {
  if (fd_ >= 0) ::close(fd_);
}

void NpyRowReader::read_bytes(uint64_t offset, uint64_t bytes, void* dst) {
  const int err = read_fully_at(fd_, dst, static_cast<size_t>(bytes), offset);
  if (err == ENODATA)
    fail(path_, ": truncated: the file ends at byte ", offset,
         " although its header promised more (did it change after it was opened?)");
  if (err != 0) fail_file(path_, ": read error at byte ", offset, ": ", std::strerror(err));
}

void NpyRowReader::read_rows(int64_t first, int64_t n, float* out) {
  if (first < 0 || n < 0 || first > rows_ || n > rows_ - first)
    fail(path_, ": rows [", first, ", ", first + n, ") requested from a file of ", rows_, " rows");
  const uint64_t count = static_cast<uint64_t>(n) * static_cast<uint64_t>(cols_);
  const uint64_t start = data_offset_ + static_cast<uint64_t>(first) *
                                            static_cast<uint64_t>(cols_) * elem_size_;
  if (elem_size_ == 4) {
    read_bytes(start, count * 4, out);
    if (!detail::host_is_little_endian()) swap_bytes(out, count, 4);
    return;
  }
  scratch_.resize(static_cast<size_t>(std::min<uint64_t>(count, kConvertValues)));
  for (uint64_t done = 0; done < count;) {
    const uint64_t m = std::min<uint64_t>(count - done, kConvertValues);
    read_bytes(start + done * 8, m * 8, scratch_.data());
    if (!detail::host_is_little_endian()) swap_bytes(scratch_.data(), m, 8);
    const uint64_t element = static_cast<uint64_t>(first) * static_cast<uint64_t>(cols_) + done;
    for (uint64_t i = 0; i < m; ++i)
      out[done + i] = detail::narrow_npy_feature(scratch_[i], path_, element + i, cols_);
    done += m;
  }
}

NpyRowWriter::NpyRowWriter(const std::string& path, int64_t rows, int64_t cols)
    : path_(path), rows_(rows), cols_(cols) {
  if (rows < 0 || cols < 0) fail(path, ": cannot write a ", rows, " x ", cols, " matrix");
  file_ = std::make_unique<AtomicFile>(path);
  const std::string header = detail::npy_header_bytes("<f4", {rows, cols});
  file_->write(header.data(), header.size());
}

NpyRowWriter::~NpyRowWriter() = default;

void NpyRowWriter::write_rows(const float* data, int64_t n) {
  if (!file_) fail(path_, ": write after finish");
  if (n < 0 || n > rows_ - written_)
    fail(path_, ": ", n, " more rows would exceed the ", rows_, " rows declared (", written_,
         " written)");
  const size_t count = static_cast<size_t>(n) * static_cast<size_t>(cols_);
  if (detail::host_is_little_endian()) {
    file_->write(data, count * sizeof(float));
  } else {
    swap_.resize(count * sizeof(float));
    std::memcpy(swap_.data(), data, swap_.size());
    swap_bytes(swap_.data(), count, 4);
    file_->write(swap_.data(), swap_.size());
  }
  written_ += n;
}

void NpyRowWriter::finish() {
  if (!file_) fail(path_, ": finished twice");
  if (written_ != rows_)
    fail(path_, ": only ", written_, " of the ", rows_, " declared rows were written");
  std::unique_ptr<AtomicFile> file = std::move(file_);
  file->commit();
}

}  // namespace zscrgan
