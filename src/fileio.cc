#include "zscrgan/fileio.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "zscrgan/error.h"

namespace zscrgan {

namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path, ": cannot open: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return ss.str();
}

std::string unique_suffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  uint64_t x = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ t ^ (counter.fetch_add(1) << 48);
  // splitmix64 finaliser: spreads the bits so short prefixes differ.
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return std::string(buf, 12);
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp-" + unique_suffix();
  auto remove_tmp = [&] {
    std::error_code ec;
    fs::remove(tmp, ec);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, ": cannot create ", tmp, ": ", std::strerror(errno));
    try {
      write(out);
      out.flush();
      if (!out) fail(path, ": write failed: ", std::strerror(errno));
    } catch (...) {
      out.close();
      remove_tmp();
      throw;
    }
  }
  // The data reaches the disk before the rename makes it the file.
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    remove_tmp();
    fail(path, ": flush failed: ", std::strerror(err));
  }
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    remove_tmp();
    fail(path, ": cannot rename ", tmp, " into place: ", ec.message());
  }
  remove_stale_temporaries(path);  // left by a writer that was killed before its rename
}

void remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const std::string prefix = p.filename().string() + ".tmp";
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    // "<name>.tmp-<12 hex digits>" as unique_suffix() makes them, and the older fixed "<name>.tmp".
    const bool ours = rest.empty() || (rest.size() == 13 && rest[0] == '-' &&
                                       rest.find_first_not_of("0123456789abcdef", 1) == std::string::npos);
    std::error_code ignored;
    if (ours && it->is_regular_file(ignored)) fs::remove(it->path(), ignored);
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(content.data(), std::streamsize(content.size())); });
}

void append_line(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  if (!out) fail(path, ": cannot append: ", std::strerror(errno));
  out << line << '\n';
  out.flush();
  if (!out) fail(path, ": append failed");
}

}  // namespace zscrgan
