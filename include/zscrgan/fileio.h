// Small file helpers: whole-file reads and crash-safe writes (temp file, flush, rename).
#ifndef ZSCRGAN_FILEIO_H
#define ZSCRGAN_FILEIO_H

#include <string>

namespace zscrgan {

std::string read_text_file(const std::string& path);  // throws Error naming the path
// Writes to path + ".tmp", flushes and fsyncs, renames over path. Never leaves a partial path.
void write_file_atomic(const std::string& path, const std::string& content);
// Appends one line and flushes (metrics.jsonl).
void append_line(const std::string& path, const std::string& line);

}  // namespace zscrgan

#endif  // ZSCRGAN_FILEIO_H
