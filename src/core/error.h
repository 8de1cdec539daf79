// Errors: exceptions carrying one clear line (Error, and the FileError / DeviceError kinds
// below). Library code throws; only the CLI decides how to exit. Never call exit() below main().
#ifndef ZSCRGAN_ERROR_H
#define ZSCRGAN_ERROR_H

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

namespace zscrgan {

// Text that comes from outside (file contents, keys, values, paths, a library's message) made
// fit for a one-line message: a newline becomes \n, a tab \t, every other control byte, DEL
// and every byte that is not part of a valid UTF-8 sequence \xNN; past max_bytes the text is
// cut and ends with "... (N bytes)" giving its full length.
std::string printable(const std::string& text, std::size_t max_bytes = 200);
// printable() between single quotes: 'batch_size'.
std::string in_quotes(const std::string& text, std::size_t max_bytes = 200);
// True when `text` is valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(const std::string& text);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The kinds an embedding program maps to its own errors (the CLI treats them all alike):
// a file or folder that could not be opened, read, written or renamed...
class FileError : public Error {
 public:
  explicit FileError(const std::string& what) : Error(what) {}
};
// ... and a compute device that is unavailable or failed (CUDA, cuBLAS, a kernel's check).
class DeviceError : public Error {
 public:
  explicit DeviceError(const std::string& what) : Error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from its parts: fail("file ", path, ": key '", key, "' must be > 0").
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}
// The same, throwing FileError: the operating system refused to open, read or write a file.
template <typename... Parts>
[[noreturn]] void fail_file(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw FileError(os.str());
}
// The same, throwing DeviceError.
template <typename... Parts>
[[noreturn]] void fail_device(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw DeviceError(os.str());
}

}  // namespace zscrgan

// Internal invariant (shapes, preconditions): names the expression, file and line.
#define ZS_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::zscrgan::fail(__FILE__, ":", __LINE__, ": check failed: " #cond ": ", __VA_ARGS__); \
  } while (0)

#endif  // ZSCRGAN_ERROR_H
