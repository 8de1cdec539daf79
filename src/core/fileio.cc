#include "core/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <streambuf>
#include <system_error>

#include "core/error.h"
#include "core/splitmix64.h"

namespace zscrgan {

namespace fs = std::filesystem;

void require_regular_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;  // opening it will say why
  if (S_ISDIR(st.st_mode)) fail_file(path, ": cannot open: is a directory");
  // A FIFO would block the open, a device could stream without end.
  if (!S_ISREG(st.st_mode)) fail_file(path, ": cannot open: not a regular file");
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  require_regular_file(path);
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size > max_bytes)
    fail_file(path, ": ", size, " bytes, more than the ", max_bytes, " read from such a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail_file(path, ": read error");
  return ss.str();
}

std::string unique_suffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  uint64_t x = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ t ^ (counter.fetch_add(1) << 48);
  x = splitmix64(x);  // spreads the bits so short prefixes differ
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return std::string(buf, 12);
}

namespace {

std::string sys_error(int err) { return std::error_code(err, std::generic_category()).message(); }

// Linux moves at most 0x7ffff000 bytes per call.
constexpr size_t kMaxIo = size_t(1) << 30;

// The one read/write loop: `step` moves up to `chunk` bytes at `p` and returns what read(2) or
// write(2) would.
template <typename Step>
int io_loop(size_t size, int early_end, Step step) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = step(done, std::min(size - done, kMaxIo));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return early_end;
    done += static_cast<size_t>(n);
  }
  return 0;
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// An ostream's buffer over an AtomicFile; the first failed write is kept and rethrown.
class AtomicFileBuf : public std::streambuf {
 public:
  explicit AtomicFileBuf(AtomicFile& f) : f_(f) { setp(buf_, buf_ + sizeof buf_); }
  // Flushes what is buffered; rethrows the failure that stopped the stream, if any.
  void finish() {
    drain();
    if (error_) std::rethrow_exception(error_);
  }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    if (error_) return false;
    const size_t n = static_cast<size_t>(pptr() - pbase());
    try {
      if (n) f_.write(pbase(), n);
    } catch (...) {
      error_ = std::current_exception();
      return false;
    }
    setp(buf_, buf_ + sizeof buf_);
    return true;
  }

  AtomicFile& f_;
  char buf_[1 << 16];
  std::exception_ptr error_;
};

}  // namespace

int write_fully(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  return io_loop(size, EIO, [&](size_t done, size_t chunk) { return ::write(fd, p + done, chunk); });
}

int read_fully(int fd, void* data, size_t size) {
  auto* p = static_cast<char*>(data);
  return io_loop(size, ENODATA, [&](size_t done, size_t chunk) { return ::read(fd, p + done, chunk); });
}

int read_fully_at(int fd, void* data, size_t size, uint64_t& offset) {
  auto* p = static_cast<char*>(data);
  const uint64_t start = offset;
  return io_loop(size, ENODATA, [&](size_t done, size_t chunk) {
    offset = start + done;
    const ssize_t n = ::pread(fd, p + done, chunk, static_cast<off_t>(offset));
    if (n > 0) offset += static_cast<uint64_t>(n);
    return n;
  });
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  // A unique name: two writers never share a temporary, and one killed mid-write leaves a file
  // the next successful write removes (remove_stale_temporaries).
  tmp_ = path + ".tmp-" + unique_suffix();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_file(path, ": cannot create '", tmp_, "': ", sys_error(errno));
  temporary_exists_ = true;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (temporary_exists_) ::unlink(tmp_.c_str());
}

void AtomicFile::abandon(const std::string& what, int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  temporary_exists_ = false;
  fail_file(path_, ": ", what, ": ", sys_error(err));
}

void AtomicFile::write(const void* data, size_t size) {
  if (fd_ < 0) fail(path_, ": write after the file was finished");
  if (int err = write_fully(fd_, data, size)) abandon("cannot write '" + tmp_ + "'", err);
}

void AtomicFile::commit() {
  if (fd_ < 0) fail(path_, ": finished twice");
  // The data reaches the disk before the rename makes it the file.
  if (::fsync(fd_) != 0) {
    const int err = errno;
    abandon("cannot flush '" + tmp_ + "' to disk", err);
  }
  const int closed = ::close(fd_);
  const int close_err = errno;
  fd_ = -1;
  if (closed != 0) abandon("cannot close '" + tmp_ + "'", close_err);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    abandon("cannot rename '" + tmp_ + "' over it", err);
  }
  temporary_exists_ = false;
  remove_stale_temporaries(path_);  // left by a writer that was killed before its rename

  // Make the rename itself durable. Some file systems cannot sync a directory (EINVAL); the
  // rename is still atomic there, only its durability is up to the file system.
  const std::string dir = parent_directory(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int err = errno;
    fail_file(path_, ": written, but cannot open its directory '", dir, "' to sync it: ", sys_error(err));
  }
  const int synced = ::fsync(dfd);
  const int sync_err = errno;
  ::close(dfd);
  if (synced != 0 && sync_err != EINVAL)
    fail_file(path_, ": written, but cannot sync its directory '", dir, "': ", sys_error(sync_err));
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  AtomicFile file(path);
  {
    AtomicFileBuf buf(file);
    std::ostream out(&buf);
    write(out);
    out.flush();
    buf.finish();
    if (!out) fail_file(path, ": cannot write '", file.temporary(), "'");
  }
  file.commit();
}

void check_folder_replaceable(const fs::path& target, const std::string& name,
                              const std::function<std::string(const std::string&)>& foreign) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(target, ec))) return;
  if (fs::is_symlink(fs::symlink_status(target, ec)) || !fs::is_directory(target, ec))
    fail(name, ": exists and is not a folder; refusing to replace it");
  for (const auto& entry : fs::directory_iterator(target, ec)) {
    const std::string why = foreign(entry.path().filename().string());
    if (!why.empty()) fail(name, ": exists and ", why, "; refusing to replace it");
  }
  if (ec) fail_file(name, ": cannot list: ", ec.message());
}

fs::path create_folder_beside(const fs::path& target, const std::string& name) {
  // Temporary folders a killed writer of the same target left behind (one writer at a time).
  const std::string target_name = target.filename().string();
  remove_stale_temporaries_in(target.has_parent_path() ? target.parent_path().string() : ".",
                              [&](const std::string& t) { return t == target_name; },
                              TemporaryKind::Folder);
  std::error_code ec;
  for (int attempt = 0;; ++attempt) {
    fs::path tmp = target;
    tmp += ".tmp-" + unique_suffix();
    if (fs::create_directory(tmp, ec)) return tmp;
    if (ec || attempt > 8)
      fail_file(name, ": cannot create the temporary folder ", tmp.string(), ": ",
           ec ? ec.message() : "name collision");
  }
}

CreatedParents::CreatedParents(const fs::path& target, const std::string& name) {
  if (!target.has_parent_path()) return;
  std::error_code ec;
  for (fs::path p = target.parent_path(); !p.empty() && !fs::exists(fs::symlink_status(p, ec));
       p = p.parent_path()) {
    created_.push_back(p);
    if (p == p.parent_path()) break;
  }
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    remove_if_empty();
    fail_file(name, ": cannot create the parent folder: ", ec.message());
  }
}

void CreatedParents::remove_if_empty() noexcept {
  std::error_code ignored;
  for (const fs::path& p : created_) fs::remove(p, ignored);  // removes a folder only while empty
}

void move_folder_into_place(const fs::path& tmp, const fs::path& target, const std::string& name) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(target, ec))) {
    // Move the old folder aside first so that a failed rename can put it back.
    fs::path old = target;
    old += ".old-" + unique_suffix();
    fs::rename(target, old, ec);
    if (ec) fail_file(name, ": cannot move the existing folder aside: ", ec.message());
    fs::rename(tmp, target, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(old, target, ignored);
      fail_file(name, ": cannot rename ", tmp.string(), " into place: ", ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, target, ec);
    if (ec) fail_file(name, ": cannot rename ", tmp.string(), " into place: ", ec.message());
  }
}

std::string temporary_target_name(const std::string& name) {
  // "<name>.tmp-<12 hex digits>" exactly as unique_suffix() makes them: any other name, a
  // plain "<name>.tmp" included, may be the user's own and is never removed.
  const size_t at = name.rfind(".tmp-");
  if (at == std::string::npos || at == 0) return "";
  const std::string rest = name.substr(at + 4);
  const bool ours = rest.size() == 13 && rest.find_first_not_of("0123456789abcdef", 1) == std::string::npos;
  return ours ? name.substr(0, at) : "";
}

void remove_stale_temporaries_in(const std::string& dir,
                                 const std::function<bool(const std::string&)>& of_target,
                                 TemporaryKind kind) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string target = temporary_target_name(it->path().filename().string());
    if (target.empty() || !of_target(target)) continue;
    std::error_code ignored;
    if (kind == TemporaryKind::File && it->is_regular_file(ignored))
      fs::remove(it->path(), ignored);
    else if (kind == TemporaryKind::Folder && it->is_directory(ignored) && !it->is_symlink(ignored))
      fs::remove_all(it->path(), ignored);
  }
}

void remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const std::string name = p.filename().string();
  remove_stale_temporaries_in(p.has_parent_path() ? p.parent_path().string() : ".",
                              [&](const std::string& target) { return target == name; });
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(content.data(), std::streamsize(content.size())); });
}

void append_line(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail_file(path, ": cannot append: ", sys_error(errno));
  const std::string text = line + '\n';
  int err = write_fully(fd, text.data(), text.size());
  // Synced, as the checkpoint written after it is: a power loss must not keep the round's
  // checkpoint and lose its metrics line, which a resume could not write again.
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) fail_file(path, ": append failed: ", sys_error(err));
}

}  // namespace zscrgan
