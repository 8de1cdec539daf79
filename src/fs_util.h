// Internal: small file-system helpers shared by the readers and writers.
#ifndef ZSCRGAN_SRC_FS_UTIL_H
#define ZSCRGAN_SRC_FS_UTIL_H

#include <functional>
#include <ostream>
#include <string>

namespace zscrgan {
namespace detail {

// Reads a whole text file; a missing or unreadable file fails naming the path.
std::string read_text_file(const std::string& path);

// A short random hex string for temporary sibling names (".tmp-<suffix>").
std::string unique_suffix();

// Writes `path` through a temporary sibling renamed into place, so a failed write never
// leaves a partial file (and never destroys an existing one). `write` fills the stream.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_FS_UTIL_H
