// .npy reading and writing: round trips, hand-built headers as numpy writes them, and every
// rejected input naming the file.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "data_test_util.h"
#include "formats/npy.h"
#include "formats/npy_stream.h"

namespace {

using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

// A .npy file as numpy lays it out: magic, version, header length, padded dict, data.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  const size_t unpadded = prefix + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t n = header.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((n >> 16) & 0xff);
    out += static_cast<char>((n >> 24) & 0xff);
  }
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

zscrgan::HostMatrix sample_matrix(int64_t rows, int64_t cols) {
  zscrgan::HostMatrix m;
  m.rows = rows;
  m.cols = cols;
  for (int64_t i = 0; i < rows * cols; ++i) m.data.push_back(0.25f * static_cast<float>(i) - 3.1f);
  return m;
}

TEST(Npy, MatrixRoundTripFloat32) {
  ScopedTempDir dir;
  const auto m = sample_matrix(7, 5);
  zscrgan::write_npy_matrix(dir.file("m.npy"), m);
  const auto r = zscrgan::read_npy_matrix(dir.file("m.npy"));
  EXPECT_EQ(r.rows, 7);
  EXPECT_EQ(r.cols, 5);
  EXPECT_EQ(r.data, m.data);
}

TEST(Npy, WriterLayoutMatchesNumpy) {
  ScopedTempDir dir;
  zscrgan::write_npy_matrix(dir.file("m.npy"), sample_matrix(3, 4));
  const std::string bytes = zscrgan_test::read_bytes(dir.file("m.npy"));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), std::string("\x93NUMPY"));
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const size_t hlen = static_cast<unsigned char>(bytes[8]) |
                      (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header = bytes.substr(10, hlen);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 0), 0u)
      << header;
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(bytes.size(), 10 + hlen + 3 * 4 * 4);

  zscrgan::write_npy_labels(dir.file("l.npy"), {1, 2, 3});
  const std::string lbytes = zscrgan_test::read_bytes(dir.file("l.npy"));
  EXPECT_NE(lbytes.find("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }"),
            std::string::npos);
  EXPECT_EQ(lbytes.size() % 8, 0u);  // header is 64-aligned, data 3 x 8 bytes
}

TEST(Npy, LabelsRoundTripInt64) {
  ScopedTempDir dir;
  const std::vector<int64_t> labels = {0, -5, 17, std::numeric_limits<int64_t>::max(),
                                       std::numeric_limits<int64_t>::min(), 3};
  zscrgan::write_npy_labels(dir.file("l.npy"), labels);
  EXPECT_EQ(zscrgan::read_npy_labels(dir.file("l.npy")), labels);
}

TEST(Npy, EmptyArraysRoundTrip) {
  ScopedTempDir dir;
  zscrgan::write_npy_matrix(dir.file("m.npy"), sample_matrix(0, 6));
  const auto r = zscrgan::read_npy_matrix(dir.file("m.npy"));
  EXPECT_EQ(r.rows, 0);
  EXPECT_EQ(r.cols, 6);
  zscrgan::write_npy_labels(dir.file("l.npy"), {});
  EXPECT_TRUE(zscrgan::read_npy_labels(dir.file("l.npy")).empty());
}

TEST(Npy, ReadsFloat64AsFloat32) {
  ScopedTempDir dir;
  const std::vector<double> v = {1.5, -2.25, 1e-3, 3.0, 0.1, 1e30};
  zscrgan_test::write_bytes(dir.file("d.npy"), npy_bytes(dict("<f8", "(2, 3)"), raw(v)));
  const auto m = zscrgan::read_npy_matrix(dir.file("d.npy"));
  ASSERT_EQ(m.rows, 2);
  ASSERT_EQ(m.cols, 3);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(m.data[i], static_cast<float>(v[i]));
}

// A finite float64 beyond float32's range is refused where it is, by both readers, not turned
// into an inf that the file does not hold.
TEST(Npy, Float64BeyondFloat32sRangeIsRefusedByRowAndColumn) {
  ScopedTempDir dir;
  const std::vector<double> v = {1.5, -2.25, 1e-3, 3.0, -1e300, 1e30};
  zscrgan_test::write_bytes(dir.file("d.npy"), npy_bytes(dict("<f8", "(2, 3)"), raw(v)));
  const std::string want = dir.file("d.npy") + ": row 1, column 1 holds -1e+300, beyond float32's range";
  const std::string whole = error_of([&] { zscrgan::read_npy_matrix(dir.file("d.npy")); });
  EXPECT_EQ(whole.rfind(want, 0), 0u) << whole;
  zscrgan::NpyRowReader rows(dir.file("d.npy"));
  std::vector<float> out(3);
  rows.read_rows(0, 1, out.data());  // row 0 is in range
  const std::string streamed = error_of([&] { rows.read_rows(1, 1, out.data()); });
  EXPECT_EQ(streamed.rfind(want, 0), 0u) << streamed;
}

TEST(Npy, ReadsInt32Labels) {
  ScopedTempDir dir;
  const std::vector<int32_t> v = {4, -1, 2147483647, 0};
  zscrgan_test::write_bytes(dir.file("i.npy"), npy_bytes(dict("<i4", "(4,)"), raw(v)));
  EXPECT_EQ(zscrgan::read_npy_labels(dir.file("i.npy")),
            (std::vector<int64_t>{4, -1, 2147483647, 0}));
}

TEST(Npy, ReadsVersions2And3AndNativeOrderForms) {
  ScopedTempDir dir;
  const std::vector<float> v = {1, 2, 3, 4};
  for (int major : {2, 3}) {
    zscrgan_test::write_bytes(dir.file("v.npy"), npy_bytes(dict("<f4", "(2, 2)"), raw(v), major));
    EXPECT_EQ(zscrgan::read_npy_matrix(dir.file("v.npy")).data, v) << "version " << major;
  }
  for (const char* descr : {"=f4", "|f4"}) {
    zscrgan_test::write_bytes(dir.file("n.npy"), npy_bytes(dict(descr, "(2, 2)"), raw(v)));
    EXPECT_EQ(zscrgan::read_npy_matrix(dir.file("n.npy")).data, v) << descr;
  }
  // Python 2 wrote shapes as longs; keys in another order and double quotes are valid too.
  zscrgan_test::write_bytes(
      dir.file("p.npy"),
      npy_bytes("{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"<f4\"}", raw(v)));
  EXPECT_EQ(zscrgan::read_npy_matrix(dir.file("p.npy")).data, v);
}

TEST(Npy, TruncatedFileNamesFileAndSizes) {
  ScopedTempDir dir;
  const std::string path = dir.file("t.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f4", "(100, 128)"), std::string(2048, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg, path + ": truncated: header says 100 x 128 float32 (51200 bytes of data) but "
                        "the file has 2048");
}

TEST(Npy, TrailingBytesAreAnError) {
  ScopedTempDir dir;
  const std::string path = dir.file("x.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<i8", "(2,)"), std::string(24, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_labels(path); });
  EXPECT_EQ(msg.rfind(path + ": size mismatch", 0), 0u) << msg;
  EXPECT_NE(msg.find("16 bytes of data"), std::string::npos) << msg;
}

TEST(Npy, TruncatedHeader) {
  ScopedTempDir dir;
  const std::string path = dir.file("h.npy");
  const std::string full = npy_bytes(dict("<f4", "(2, 2)"), "");
  zscrgan_test::write_bytes(path, full.substr(0, 30));
  const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg.rfind(path + ": truncated", 0), 0u) << msg;
  zscrgan_test::write_bytes(path, full.substr(0, 7));
  const std::string msg2 = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg2.rfind(path + ": truncated", 0), 0u) << msg2;
}

TEST(Npy, NonFloatDtypeForFeatures) {
  ScopedTempDir dir;
  const std::string path = dir.file("i.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<i8", "(2, 2)"), std::string(32, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg.rfind(path + ": dtype '<i8' (int64) is not supported for features", 0), 0u)
      << msg;
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f2", "(2, 2)"), std::string(8, '\0')));
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }).rfind(path + ": dtype '<f2'", 0),
            0u);
}

TEST(Npy, NonIntegerDtypeForLabels) {
  ScopedTempDir dir;
  const std::string path = dir.file("f.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f4", "(2,)"), std::string(8, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_labels(path); });
  EXPECT_EQ(msg.rfind(path + ": dtype '<f4' (float32) is not supported for labels", 0), 0u)
      << msg;
}

TEST(Npy, BigEndianIsRejected) {
  ScopedTempDir dir;
  const std::string path = dir.file("b.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict(">f4", "(1, 2)"), std::string(8, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg.rfind(path + ": big-endian dtype '>f4'", 0), 0u) << msg;
}

TEST(Npy, FortranOrderIsRejected) {
  ScopedTempDir dir;
  const std::string path = dir.file("f.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f4", "(2, 2)", true), std::string(16, '\0')));
  const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
  EXPECT_EQ(msg.rfind(path + ": fortran_order is True", 0), 0u) << msg;
}

TEST(Npy, WrongNumberOfDimensions) {
  ScopedTempDir dir;
  const std::string path = dir.file("d.npy");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f4", "(4,)"), std::string(16, '\0')));
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }),
            path + ": expected a 2-D array (rows x features) but the shape is (4,)");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<f4", "(2, 2, 1)"), std::string(16, '\0')));
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }),
            path + ": expected a 2-D array (rows x features) but the shape is (2, 2, 1)");
  zscrgan_test::write_bytes(path, npy_bytes(dict("<i8", "(2, 1)"), std::string(16, '\0')));
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_labels(path); }),
            path + ": expected a 1-D array of labels but the shape is (2, 1)");
}

TEST(Npy, BadMagic) {
  ScopedTempDir dir;
  const std::string path = dir.file("m.npy");
  std::string bytes = npy_bytes(dict("<f4", "(1, 1)"), std::string(4, '\0'));
  bytes[1] = 'X';
  zscrgan_test::write_bytes(path, bytes);
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }),
            path + ": not a .npy file (bad magic; expected \\x93NUMPY)");
  zscrgan_test::write_bytes(path, "");
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_labels(path); }).rfind(path + ": not a .npy", 0),
            0u);
}

TEST(Npy, UnsupportedVersion) {
  ScopedTempDir dir;
  const std::string path = dir.file("v.npy");
  std::string bytes = npy_bytes(dict("<f4", "(1, 1)"), std::string(4, '\0'));
  bytes[6] = 4;
  zscrgan_test::write_bytes(path, bytes);
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }).rfind(
                path + ": unsupported .npy format version 4.0", 0),
            0u);
}

TEST(Npy, MalformedHeaders) {
  ScopedTempDir dir;
  const std::string path = dir.file("h.npy");
  const std::vector<std::string> bad = {
      "{'descr': '<f4', 'fortran_order': False, }",                        // no shape
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'x': 1}",  // extra key
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1), }",            // not a bool
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1, -1), }",       // negative
      "['descr', '<f4']",                                                   // not a dict
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",  // structured
  };
  for (const auto& d : bad) {
    zscrgan_test::write_bytes(path, npy_bytes(d, std::string(4, '\0')));
    const std::string msg = error_of([&] { zscrgan::read_npy_matrix(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << d << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Npy, MissingFile) {
  ScopedTempDir dir;
  const std::string path = dir.file("absent.npy");
  EXPECT_EQ(error_of([&] { zscrgan::read_npy_matrix(path); }).rfind(path + ": cannot open", 0),
            0u);
}

TEST(Npy, WriterRejectsInconsistentMatrix) {
  ScopedTempDir dir;
  zscrgan::HostMatrix m = sample_matrix(2, 3);
  m.data.pop_back();
  const std::string path = dir.file("bad.npy");
  EXPECT_EQ(error_of([&] { zscrgan::write_npy_matrix(path, m); }).rfind(path + ": ", 0), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
