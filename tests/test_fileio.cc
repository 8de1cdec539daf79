// The one copy of each file mechanism (fileio.h): the atomic file write that every writer
// (text, .npy, safetensors, streamed .npy) goes through, the folder swap of `embed` and the
// dataset writer, and the EINTR-safe read loop.
#include "core/fileio.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "data_test_util.h"

namespace {

namespace fs = std::filesystem;
using zscrgan_test::error_of;
using zscrgan_test::matches;
using zscrgan_test::read_bytes;
using zscrgan_test::temporaries;

// A write that fails part-way (the file-size limit gives EFBIG, as a full disk gives ENOSPC)
// through the ostream interface: the error names the temporary and the system's reason, the
// previous file stays and no temporary is left.
TEST(FileIo, FailedStreamWriteLeavesThePreviousFileAndNoTemporary) {
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("out.json");
  zscrgan::write_file_atomic(path, "before\n");

  std::string message;
  {
    zscrgan_test::ScopedFileSizeLimit limit(64 * 1024);
    ASSERT_TRUE(limit.ok());
    message = error_of([&] {
      zscrgan::write_file_atomically(path, [](std::ostream& out) {
        const std::string block(4096, 'x');
        for (int i = 0; i < 64 && out; ++i) out << block;
      });
    });
  }

  EXPECT_TRUE(matches(message, path + ": cannot write '" + path + "\\.tmp-[0-9a-f]{12}': File too large"))
      << message;
  EXPECT_EQ(read_bytes(path), "before\n");
  EXPECT_EQ(temporaries(path), 0);
}

TEST(FileIo, WriterThatThrowsLeavesThePreviousFileAndNoTemporary) {
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("out.txt");
  zscrgan::write_file_atomic(path, "before");
  EXPECT_THROW(zscrgan::write_file_atomically(path,
                                              [](std::ostream& out) {
                                                out << "half";
                                                throw std::runtime_error("stop");
                                              }),
               std::runtime_error);
  EXPECT_EQ(read_bytes(path), "before");
  EXPECT_EQ(temporaries(path), 0);
}

TEST(FileIo, AtomicFileNotCommittedLeavesNothing) {
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("f.bin");
  {
    zscrgan::AtomicFile f(path);
    f.write("abc", 3);
    EXPECT_TRUE(fs::exists(f.temporary()));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(temporaries(path), 0);
  {
    zscrgan::AtomicFile f(path);
    f.write("abc", 3);
    f.commit();
    EXPECT_EQ(error_of([&] { f.commit(); }), path + ": finished twice");
  }
  EXPECT_EQ(read_bytes(path), "abc");
}

// A failed rename puts the folder that was moved aside back.
TEST(FileIo, FailedFolderSwapRestoresTheOldFolder) {
  zscrgan_test::ScopedTempDir dir;
  const fs::path target = dir.file("out");
  fs::create_directories(target);
  zscrgan::write_file_atomic((target / "a.npy").string(), "old");
  const fs::path tmp = zscrgan::create_folder_beside(target, "out");
  fs::remove(tmp);  // the rename of tmp into place now fails
  const std::string message = error_of([&] { zscrgan::move_folder_into_place(tmp, target, "out"); });
  EXPECT_TRUE(matches(message, "out: cannot rename .*\\.tmp-[0-9a-f]{12} into place: .*")) << message;
  EXPECT_EQ(read_bytes((target / "a.npy").string()), "old");
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename(), "out") << "left behind: " << e.path();

  const fs::path next = zscrgan::create_folder_beside(target, "out");
  zscrgan::write_file_atomic((next / "b.npy").string(), "new");
  zscrgan::move_folder_into_place(next, target, "out");
  EXPECT_EQ(read_bytes((target / "b.npy").string()), "new");
  EXPECT_FALSE(fs::exists(target / "a.npy"));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename(), "out") << "left behind: " << e.path();
}

// A new temporary folder for a target removes the ones a killed writer of that target left;
// another target's, and a file of that shape, stay.
TEST(FileIo, ANewTemporaryFolderRemovesTheStaleOnesOfItsTarget) {
  zscrgan_test::ScopedTempDir dir;
  const fs::path target = dir.file("out");
  const fs::path stale = dir.file("out.tmp-0123456789ab"), other = dir.file("outer.tmp-0123456789ab");
  const fs::path file_like = dir.file("out.tmp-abcdef012345");
  // Names that are not ours, though they look like temporaries: the user's, kept.
  const fs::path users[] = {dir.file("out.tmp"), dir.file("out.tmp-notes"), dir.file("out.tmp-0123456789AB")};
  for (const fs::path& u : users) {
    fs::create_directory(u);
    zscrgan::write_file_atomic((u / "notes.txt").string(), "precious");
  }
  fs::create_directories(stale / "inner");
  zscrgan::write_file_atomic((stale / "inner" / "x.npy").string(), "x");
  fs::create_directory(other);
  zscrgan::write_file_atomic(file_like.string(), "x");
  const fs::path fresh = zscrgan::create_folder_beside(target, "out");
  EXPECT_TRUE(fs::is_directory(fresh));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(file_like));
  for (const fs::path& u : users) EXPECT_TRUE(fs::exists(u / "notes.txt")) << u;
  // And a file's write keeps the user's "<name>.tmp" file beside it.
  zscrgan::write_file_atomic(dir.file("r.json.tmp"), "precious");
  zscrgan::write_file_atomic(dir.file("r.json"), "[]");
  EXPECT_TRUE(fs::exists(dir.file("r.json.tmp")));
}

// A FIFO, a device or an oversized file is refused by name before anything blocks or fills
// memory (a FIFO's open would wait for a writer that never comes).
TEST(FileIo, ReadingRefusesWhatIsNotARegularFileOrTooLarge) {
  zscrgan_test::ScopedTempDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(error_of([&] { zscrgan::read_text_file(fifo); }), fifo + ": cannot open: not a regular file");
  EXPECT_EQ(error_of([&] { zscrgan::read_text_file("/dev/zero"); }),
            "/dev/zero: cannot open: not a regular file");
  EXPECT_EQ(error_of([&] { zscrgan::read_text_file(dir.path().string()); }),
            dir.path().string() + ": cannot open: is a directory");
  const std::string ten = dir.file("ten");
  zscrgan::write_file_atomic(ten, "0123456789");
  EXPECT_EQ(zscrgan::read_text_file(ten, 10), "0123456789");
  EXPECT_EQ(error_of([&] { zscrgan::read_text_file(ten, 9); }),
            ten + ": 10 bytes, more than the 9 read from such a file");
}

TEST(FileIo, ReadLoopsReportAnEarlyEndAndWhereItStopped) {
  zscrgan_test::ScopedTempDir dir;
  const std::string path = dir.file("ten");
  zscrgan::write_file_atomic(path, "0123456789");
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[16] = {};
  uint64_t offset = 4;
  EXPECT_EQ(zscrgan::read_fully_at(fd, buf, 6, offset), 0);
  EXPECT_EQ(std::string(buf, 6), "456789");
  EXPECT_EQ(offset, 10u);
  offset = 7;
  EXPECT_EQ(zscrgan::read_fully_at(fd, buf, 5, offset), ENODATA);
  EXPECT_EQ(offset, 10u);
  EXPECT_EQ(zscrgan::read_fully(fd, buf, 11), ENODATA);
  ::close(fd);
}

}  // namespace
