// Small file helpers shared by every reader and writer: whole-file reads, EINTR-safe read and
// write loops, crash-safe writes (a temporary sibling, written, synced and renamed into place,
// then the directory synced), crash-safe folder replacement, and appends. These are the only
// copies of these mechanisms in the project.
#ifndef ZSCRGAN_FILEIO_H
#define ZSCRGAN_FILEIO_H

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace zscrgan {

// Reads a whole file; a missing or unreadable file fails naming the path.
// Fails naming the path when it is a directory, FIFO, device or socket (stat alone: a FIFO's
// open would block); a path that does not exist is left to the open that follows.
void require_regular_file(const std::string& path);
// The whole file; fails naming it when it is not a regular file or holds more than max_bytes.
std::string read_text_file(const std::string& path, uint64_t max_bytes = UINT64_MAX);

// A short random hex string for temporary sibling names (".tmp-<suffix>").
std::string unique_suffix();

// Loops over read/write until `size` bytes are moved, retrying on EINTR. Each returns 0 or the
// errno of the failed call; the reads return ENODATA when the file ends early (write_fully
// returns EIO when write moves nothing). read_fully_at uses pread from `offset`, which it
// advances by the bytes moved (so after a failure it names the byte where it stopped).
int write_fully(int fd, const void* data, size_t size);
int read_fully(int fd, void* data, size_t size);
int read_fully_at(int fd, void* data, size_t size, uint64_t& offset);

// A file written through a uniquely named temporary sibling "<path>.tmp-<unique_suffix()>",
// created exclusively. commit() syncs it, renames it over `path`, removes the temporaries of
// `path` that killed writers left, then syncs the directory: a crash at any instant leaves
// either the previous file or the new one at `path`. Destroyed without commit() (an error, an
// exception), it removes the temporary and leaves `path` as it was. Every failure names `path`
// and the system's reason: "<path>: cannot create '<tmp>': ...", "cannot write '<tmp>': ...",
// "cannot flush '<tmp>' to disk: ...", "cannot rename '<tmp>' over it: ...".
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temporary() const { return tmp_; }

 private:
  [[noreturn]] void abandon(const std::string& what, int err);

  std::string path_, tmp_;
  int fd_ = -1;
  bool temporary_exists_ = false;  // to remove when the file is abandoned
};

// Writes `path` through a temporary sibling "<path>.tmp-<unique_suffix()>" that is flushed,
// synced and renamed into place, so a failure or a crash never leaves a partial file (and never
// destroys an existing one); after the rename, temporaries of `path` left by a writer that was
// killed are removed. `write` fills the stream.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);
void write_file_atomic(const std::string& path, const std::string& content);

// Replacing a whole folder: write the new content into create_folder_beside(target), then
// move_folder_into_place(tmp, target). The temporary folder is "<target>.tmp-<unique_suffix()>"
// (target's parent must exist); those a killed writer of the same target left are removed
// first. An existing target is first renamed aside to
// "<target>.old-<suffix>" so that a failed rename can put it back, and is removed once the new
// folder is in place. `name` (the folder as the user gave it) starts every message.
// Before replacing a folder: refuses a `target` that exists and is not a folder (a symlink
// included), or a folder with an entry `foreign` objects to; `foreign(entry name)` returns ""
// for an entry the writer makes, else how the message goes on ("holds 'x', which ...").
void check_folder_replaceable(const std::filesystem::path& target, const std::string& name,
                              const std::function<std::string(const std::string&)>& foreign);
std::filesystem::path create_folder_beside(const std::filesystem::path& target, const std::string& name);
// The parent folders of `target` that did not exist: created on construction (a failure names
// `name`); remove_if_empty() takes them away again after a write into them failed.
class CreatedParents {
 public:
  CreatedParents(const std::filesystem::path& target, const std::string& name);
  void remove_if_empty() noexcept;

 private:
  std::vector<std::filesystem::path> created_;  // deepest first
};
void move_folder_into_place(const std::filesystem::path& tmp, const std::filesystem::path& target,
                            const std::string& name);

// The file name a temporary sibling's name stands for ("<name>.tmp-<12 hex digits>"), or ""
// when the name is not one of ours.
std::string temporary_target_name(const std::string& name);
// Removes the temporary siblings of `path` ("<path>.tmp-<suffix>")
// that a killed writer left behind. Only one process writes a given path at a time.
void remove_stale_temporaries(const std::string& path);
// The same for every temporary in `dir` whose target name of_target accepts: the files, or
// (a folder replaced through create_folder_beside) the folders.
enum class TemporaryKind { File, Folder };
void remove_stale_temporaries_in(const std::string& dir,
                                 const std::function<bool(const std::string& target)>& of_target,
                                 TemporaryKind kind = TemporaryKind::File);

// Appends one line and syncs it to disk (metrics.jsonl).
void append_line(const std::string& path, const std::string& line);

}  // namespace zscrgan

#endif  // ZSCRGAN_FILEIO_H
