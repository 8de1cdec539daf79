// Streaming .npy access: row ranges read back exactly (float32 and float64, any version numpy
// writes), the same validation and messages as the whole-file reader, and a row writer whose
// unfinished files never appear.
#include <gtest/gtest.h>

#include <filesystem>

#include "data_test_util.h"
#include "formats/npy.h"
#include "formats/npy_stream.h"

namespace zscrgan {
namespace {

using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

// A .npy file as numpy lays it out (version 1.0 or 2.0), for hand-built inputs.
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data,
                      int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

HostMatrix counting_matrix(int64_t rows, int64_t cols) {
  HostMatrix m;
  m.rows = rows;
  m.cols = cols;
  for (int64_t i = 0; i < rows * cols; ++i) m.data.push_back(0.5f * static_cast<float>(i) - 7.f);
  return m;
}

TEST(NpyRowReader, ReadsAnyRowRangeOfFloat32) {
  ScopedTempDir dir;
  const HostMatrix m = counting_matrix(37, 5);
  write_npy_matrix(dir.file("m.npy"), m);
  NpyRowReader r(dir.file("m.npy"));
  EXPECT_EQ(r.rows(), 37);
  EXPECT_EQ(r.cols(), 5);
  EXPECT_STREQ(r.dtype_name(), "float32");
  for (auto [first, n] : {std::pair<int64_t, int64_t>{0, 37}, {0, 1}, {36, 1}, {10, 13}, {37, 0}}) {
    std::vector<float> out(size_t(n * 5) + 1, -99.f);
    r.read_rows(first, n, out.data());
    for (int64_t i = 0; i < n * 5; ++i) ASSERT_EQ(out[i], m.data[first * 5 + i]) << first << "+" << i;
    EXPECT_EQ(out.back(), -99.f) << "wrote past the requested rows";
  }
  // Out of order, repeatedly: no hidden cursor.
  std::vector<float> a(5), b(5);
  r.read_rows(30, 1, a.data());
  r.read_rows(2, 1, b.data());
  r.read_rows(30, 1, b.data());
  EXPECT_EQ(a, b);
}

TEST(NpyRowReader, ConvertsFloat64InBoundedPieces) {
  ScopedTempDir dir;
  // More values than one conversion piece (2^17), so the piecewise path is exercised.
  const int64_t rows = 300, cols = 1000;
  std::vector<double> v(rows * cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1e-3 * static_cast<double>(i) + 0.1;
  const std::string path = dir.file("d.npy");
  zscrgan_test::write_bytes(path, npy_bytes("<f8", "(300, 1000)", raw(v), 2));
  NpyRowReader r(path);
  EXPECT_STREQ(r.dtype_name(), "float64");
  std::vector<float> out(size_t(250) * cols);
  r.read_rows(41, 250, out.data());
  for (size_t i = 0; i < out.size(); ++i)
    ASSERT_EQ(out[i], static_cast<float>(v[41 * cols + i])) << i;
}

TEST(NpyRowReader, RejectsWhatTheWholeFileReaderRejects) {
  ScopedTempDir dir;
  const std::string path = dir.file("t.npy");
  zscrgan_test::write_bytes(path, npy_bytes("<f4", "(100, 128)", std::string(2048, '\0')));
  EXPECT_EQ(error_of([&] { NpyRowReader r(path); }), error_of([&] { read_npy_matrix(path); }));
  EXPECT_EQ(error_of([&] { NpyRowReader r(path); }),
            path + ": truncated: header says 100 x 128 float32 (51200 bytes of data) but the file "
                   "has 2048");
  for (const auto& [descr, shape, bytes] :
       {std::tuple<std::string, std::string, size_t>{"<i8", "(2, 2)", 32}, {"<f4", "(4,)", 16},
        {">f4", "(2, 2)", 16}, {"<f2", "(2, 2)", 8}}) {
    zscrgan_test::write_bytes(path, npy_bytes(descr, shape, std::string(bytes, '\0')));
    const std::string msg = error_of([&] { NpyRowReader r(path); });
    EXPECT_EQ(msg, error_of([&] { read_npy_matrix(path); })) << descr << " " << shape;
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  }
  const std::string missing = dir.file("missing.npy");
  const std::string msg = error_of([&] { NpyRowReader r(missing); });
  EXPECT_EQ(msg.rfind(missing + ": cannot open", 0), 0u) << msg;
}

TEST(NpyRowReader, RangeOutsideTheArrayNamesTheFile) {
  ScopedTempDir dir;
  write_npy_matrix(dir.file("m.npy"), counting_matrix(4, 3));
  NpyRowReader r(dir.file("m.npy"));
  std::vector<float> out(30);
  EXPECT_EQ(error_of([&] { r.read_rows(2, 3, out.data()); }),
            dir.file("m.npy") + ": rows [2, 5) requested from a file of 4 rows");
  EXPECT_NE(error_of([&] { r.read_rows(-1, 1, out.data()); }).find(dir.file("m.npy")), std::string::npos);
}

TEST(NpyRowReader, AFileThatShrinksAfterOpeningIsReportedAsTruncated) {
  ScopedTempDir dir;
  const std::string path = dir.file("m.npy");
  write_npy_matrix(path, counting_matrix(64, 16));
  NpyRowReader r(path);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  std::vector<float> out(64 * 16);
  r.read_rows(0, 10, out.data());  // still there
  const std::string msg = error_of([&] { r.read_rows(60, 4, out.data()); });
  EXPECT_EQ(msg.rfind(path + ": truncated", 0), 0u) << msg;
}

TEST(NpyRowWriter, WritesWhatTheReadersRead) {
  ScopedTempDir dir;
  const HostMatrix m = counting_matrix(11, 4);
  {
    NpyRowWriter w(dir.file("w.npy"), 11, 4);
    w.write_rows(m.row(0), 5);
    w.write_rows(m.row(5), 0);
    w.write_rows(m.row(5), 6);
    EXPECT_FALSE(std::filesystem::exists(dir.file("w.npy"))) << "visible before finish()";
    w.finish();
  }
  write_npy_matrix(dir.file("ref.npy"), m);
  EXPECT_EQ(zscrgan_test::read_bytes(dir.file("w.npy")), zscrgan_test::read_bytes(dir.file("ref.npy")));
}

TEST(NpyRowWriter, AnUnfinishedFileLeavesNothing) {
  ScopedTempDir dir;
  const HostMatrix m = counting_matrix(6, 2);
  {
    NpyRowWriter w(dir.file("w.npy"), 6, 2);
    w.write_rows(m.row(0), 3);
    EXPECT_NE(error_of([&] { w.write_rows(m.row(0), 4); }).find("exceed"), std::string::npos);
    EXPECT_NE(error_of([&] { w.finish(); }).find("only 3 of the 6"), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace zscrgan
