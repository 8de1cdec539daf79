// Small file helpers shared by every reader and writer: whole-file reads, crash-safe writes
// (a temporary sibling, flushed and synced, renamed into place), and appends.
#ifndef ZSCRGAN_FILEIO_H
#define ZSCRGAN_FILEIO_H

#include <functional>
#include <ostream>
#include <string>

namespace zscrgan {

// Reads a whole file; a missing or unreadable file fails naming the path.
std::string read_text_file(const std::string& path);

// A short random hex string for temporary sibling names (".tmp-<suffix>").
std::string unique_suffix();

// Writes `path` through a temporary sibling "<path>.tmp-<unique_suffix()>" that is flushed,
// synced and renamed into place, so a failure or a crash never leaves a partial file (and never
// destroys an existing one); after the rename, temporaries of `path` left by a writer that was
// killed are removed. `write` fills the stream.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);
void write_file_atomic(const std::string& path, const std::string& content);

// Removes the temporary siblings of `path` ("<path>.tmp-<suffix>", and the older "<path>.tmp")
// that a killed writer left behind. Only one process writes a given path at a time.
void remove_stale_temporaries(const std::string& path);

// Appends one line and flushes (metrics.jsonl).
void append_line(const std::string& path, const std::string& line);

}  // namespace zscrgan

#endif  // ZSCRGAN_FILEIO_H
