// The safetensors reader and writer: round trips, byte-for-byte agreement with the Python
// library's layout, every malformed input refused with a message naming the file and the field,
// truncations and random corruptions refused cleanly, and atomic writes that leave the previous
// file intact when they fail.
#include "formats/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "core/error.h"

namespace {

using zscrgan_test::error_of;
using TempFolder = zscrgan_test::ScopedTempDir;
const auto read_file_bytes = zscrgan_test::read_bytes;
const auto write_file_bytes = zscrgan_test::write_bytes;
using zscrgan::SafeTensor;
using zscrgan::SafeTensorsFile;

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file made of a size field, the given header and a data buffer of buffer_bytes bytes.
std::string file_with_header(const std::string& header, size_t buffer_bytes) {
  return le64(header.size()) + header + std::string(buffer_bytes, '\x5a');
}

SafeTensorsFile parse_string(const std::string& bytes, const std::string& source) {
  return zscrgan::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                    source);
}

std::string to_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

SafeTensorsFile sample_file() {
  SafeTensorsFile f;
  f.metadata["format"] = "zscrgan-checkpoint/1";
  f.metadata["config"] = R"({"seed": 7, "note": "quotes \" and\nnewlines"})";
  std::vector<float> w(4 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(i) - 1.0f;
  f.tensors.push_back(zscrgan::make_f32_tensor("param/critic.w1", {4, 3}, w.data()));
  const float b[3] = {1.5f, -0.0f, std::nanf("")};
  f.tensors.push_back(zscrgan::make_f32_tensor("param/critic.b1", {3}, b));
  const int64_t steps = 123456789012345;
  f.tensors.push_back(zscrgan::make_i64_tensor("state/steps", {}, &steps));
  const int64_t order[5] = {4, -3, 2, 1, 0};
  f.tensors.push_back(zscrgan::make_i64_tensor("sampler/class_order", {5}, order));
  f.tensors.push_back(zscrgan::make_f32_tensor("round/empty", {0, 7}, nullptr));
  SafeTensor u8;
  u8.name = "raw";
  u8.dtype = "U8";
  u8.shape = {3};
  u8.bytes = {0, 128, 255};
  f.tensors.push_back(u8);
  return f;
}

void expect_same_content(const SafeTensorsFile& a, const SafeTensorsFile& b) {
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const SafeTensor& t : a.tensors) {
    const SafeTensor* u = b.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.dtype, u->dtype) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    EXPECT_EQ(t.bytes, u->bytes) << t.name;  // bytes, so that NaN payloads compare too
  }
}

// ---- round trips ------------------------------------------------------------------------------

TEST(Safetensors, RoundTripsTensorsAndMetadataThroughAFile) {
  TempFolder dir;
  const std::string path = dir.file("ckpt.safetensors");
  const SafeTensorsFile f = sample_file();
  zscrgan::write_safetensors_atomic(path, f);
  EXPECT_EQ(zscrgan_test::temporaries(path), 0);

  const SafeTensorsFile r = zscrgan::read_safetensors(path);
  EXPECT_EQ(r.source, path);
  expect_same_content(f, r);
  EXPECT_EQ(r.f32("param/critic.w1", {4, 3}), zscrgan::as_f32(f.tensors[0]));
  EXPECT_EQ(r.i64("state/steps", {}), std::vector<int64_t>{123456789012345});
  EXPECT_EQ(r.i64("sampler/class_order", {5}), (std::vector<int64_t>{4, -3, 2, 1, 0}));
  EXPECT_TRUE(r.f32("round/empty", {0, 7}).empty());
  EXPECT_EQ(r.find("missing"), nullptr);

  // The in-memory parser sees the same file as the streaming reader.
  const SafeTensorsFile p = parse_string(read_file_bytes(path), "mem");
  expect_same_content(f, p);
  // Written data is in the library's order (8-byte dtypes first), each tensor aligned.
  ASSERT_EQ(p.tensors.size(), 6u);
  EXPECT_EQ(p.tensors[0].name, "sampler/class_order");
  EXPECT_EQ(p.tensors[1].name, "state/steps");
  // Writing what was read gives the same bytes.
  EXPECT_EQ(to_string(zscrgan::serialize_safetensors(r)), read_file_bytes(path));
}

TEST(Safetensors, OverwritesAnExistingFile) {
  TempFolder dir;
  const std::string path = dir.file("ckpt.safetensors");
  zscrgan::write_safetensors_atomic(path, sample_file());
  SafeTensorsFile g;
  const float x = 42.0f;
  g.tensors.push_back(zscrgan::make_f32_tensor("only", {1}, &x));
  zscrgan::write_safetensors_atomic(path, g);
  const SafeTensorsFile r = zscrgan::read_safetensors(path);
  ASSERT_EQ(r.tensors.size(), 1u);
  EXPECT_TRUE(r.metadata.empty());
  EXPECT_EQ(r.f32("only", {1}), std::vector<float>{42.0f});
  EXPECT_EQ(zscrgan_test::temporaries(path), 0);
}

TEST(Safetensors, EmptyFileHoldsNoTensors) {
  const SafeTensorsFile empty;
  const std::string bytes = to_string(zscrgan::serialize_safetensors(empty));
  EXPECT_EQ(bytes, le64(8) + "{}      ");
  const SafeTensorsFile r = parse_string(bytes, "empty");
  EXPECT_TRUE(r.tensors.empty());
  EXPECT_TRUE(r.metadata.empty());
}

// ---- agreement with the Python library --------------------------------------------------------

// The bytes safetensors.numpy.save writes for
//   {"b": arange(6, float32).reshape(2, 3), "a": [1, -2] int64, "s": zeros(0, float32),
//    "sc": float64 3.5}, metadata={"epoch": "3"}
// (safetensors 0.8.0): tensors ordered by dtype then name, header padded to a multiple of 8.
std::string python_layout_bytes() {
  const std::string header =
      R"({"__metadata__":{"epoch":"3"},"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("sc":{"dtype":"F64","shape":[],"data_offsets":[16,24]},)"
      R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]},)"
      R"("s":{"dtype":"F32","shape":[0],"data_offsets":[48,48]}}     )";
  const unsigned char data[48] = {
      0x01, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // a
      0, 0, 0, 0, 0, 0, 0x0c, 0x40,                                                // sc
      0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40,              // b
      0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40};
  return le64(header.size()) + header + std::string(reinterpret_cast<const char*>(data), 48);
}

TEST(Safetensors, MatchesThePythonLibraryLayoutByteForByte) {
  const std::string bytes = python_layout_bytes();
  ASSERT_EQ(bytes.size(), 8u + 256u + 48u);
  const SafeTensorsFile r = parse_string(bytes, "python.safetensors");
  EXPECT_EQ(r.metadata.at("epoch"), "3");
  EXPECT_EQ(r.i64("a", {2}), (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(r.f32("b", {2, 3}), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(r.f32("s", {0}).empty());
  double sc = 0;
  ASSERT_EQ(r.at("sc").bytes.size(), 8u);
  std::memcpy(&sc, r.at("sc").bytes.data(), 8);
  EXPECT_EQ(sc, 3.5);

  // Built from scratch in another order, our writer produces the library's bytes.
  SafeTensorsFile f;
  f.metadata["epoch"] = "3";
  const float b[6] = {0, 1, 2, 3, 4, 5};
  f.tensors.push_back(zscrgan::make_f32_tensor("b", {2, 3}, b));
  f.tensors.push_back(zscrgan::make_f32_tensor("s", {0}, nullptr));
  const int64_t a[2] = {1, -2};
  f.tensors.push_back(zscrgan::make_i64_tensor("a", {2}, a));
  SafeTensor scalar;
  scalar.name = "sc";
  scalar.dtype = "F64";
  scalar.bytes.resize(8);
  std::memcpy(scalar.bytes.data(), &sc, 8);
  f.tensors.push_back(scalar);
  EXPECT_EQ(to_string(zscrgan::serialize_safetensors(f)), bytes);
}

// tests/fixtures/python_written.safetensors comes from tools/make_safetensors_fixture.py.
TEST(Safetensors, ReadsAFileWrittenByThePythonLibrary) {
  const std::string path = std::string(ZSCRGAN_SOURCE_DIR) + "/tests/fixtures/python_written.safetensors";
  const SafeTensorsFile r = zscrgan::read_safetensors(path);
  EXPECT_EQ(r.metadata.size(), 1u);
  EXPECT_EQ(r.metadata.at("format"), "zscrgan-test/1 \xc3\xa9\n");
  EXPECT_EQ(r.f32("param/critic.w1", {2, 3}), (std::vector<float>{-1, -0.5f, 0, 0.5f, 1, 1.5f}));
  EXPECT_EQ(r.i64("state/count", {3}), (std::vector<int64_t>{-1, 0, int64_t{1} << 40}));
  EXPECT_EQ(r.i64("idx", {2}), (std::vector<int64_t>{-7, 7}));
  EXPECT_EQ(r.i64("cursor", {1}), (std::vector<int64_t>{INT64_MAX}));
  EXPECT_TRUE(r.f32("empty", {0, 4}).empty());
  EXPECT_EQ(r.at("bytes").dtype, "U8");
  EXPECT_EQ(r.at("bytes").bytes, (std::vector<uint8_t>{0, 1, 254, 255}));
  EXPECT_EQ(r.at("half").dtype, "F16");
  EXPECT_EQ(r.at("half").bytes, (std::vector<uint8_t>{0x00, 0x3c, 0x00, 0xc0}));
  EXPECT_EQ(r.at("scalar").dtype, "F64");
  EXPECT_TRUE(r.at("scalar").shape.empty());
  // Our writer reproduces the file exactly.
  EXPECT_EQ(to_string(zscrgan::serialize_safetensors(r)), read_file_bytes(path));
}

// ---- malformed files --------------------------------------------------------------------------

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + R"(":{"dtype":")" + dtype + R"(","shape":)" + shape +
         R"(,"data_offsets":)" + offsets + "}";
}

struct MalformedCase {
  const char* what;
  std::string bytes;
  std::string message;  // the whole message after "bad.safetensors: " ...
  bool prefix_only = false;  // ... or only its start
};

void expect_message(const std::string& actual, const std::string& expected, bool prefix_only,
                    const char* what) {
  if (prefix_only)
    EXPECT_EQ(actual.substr(0, expected.size()), expected) << what << "\n  whole: " << actual;
  else
    EXPECT_EQ(actual, expected) << what;
  EXPECT_EQ(actual.find('\n'), std::string::npos) << what;
}

std::vector<MalformedCase> malformed_cases() {
  const std::string w = entry("w", "F32", "[2]", "[0,8]");
  return {
      {"shorter than the size field", std::string("\x10\0\0", 3),
       "only 3 bytes, too short for a safetensors file (truncated?)"},
      {"header larger than the file", file_with_header("{}", 0).replace(0, 8, le64(1000)),
       "header size 1000 is larger than the 2 bytes that follow the size field (truncated file?)"},
      {"header above the 100 MB cap", le64(100000001) + "{}",
       "header size 100000001 exceeds the limit of 100000000 bytes (not a safetensors file?)"},
      {"header size with the top bit set", le64(~uint64_t{0}) + "{}",
       "header size 18446744073709551615 exceeds the limit of 100000000 bytes (not a safetensors file?)"},
      {"empty header", le64(0), "the JSON header does not start with '{' (not a safetensors file?)"},
      {"array at the top", file_with_header("[]", 0),
       "the JSON header does not start with '{' (not a safetensors file?)"},
      {"leading space", file_with_header(" {}", 0),
       "the JSON header does not start with '{' (not a safetensors file?)"},
      // The JSON library's own words follow these messages; only the start is checked.
      {"unterminated JSON", file_with_header(R"({"w":)", 0),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, "
       "column 6: ", true},
      {"text after the object", file_with_header("{} x", 0),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, "
       "column 4: ", true},
      {"invalid UTF-8 in a name", file_with_header("{" + entry("w\xff", "F32", "[2]", "[0,8]") + "}", 8),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, "
       "column 4: ", true},
      {"invalid UTF-8 in a dtype", file_with_header("{" + entry("w", "F3\xc3", "[2]", "[0,8]") + "}", 8),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, "
       "column 19: ", true},
      {"lone surrogate escape", file_with_header(R"({"__metadata__":{"a":"\ud800"}})", 0),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, ",
       true},
      {"NUL byte in the header", file_with_header(std::string("{\0}", 3), 0),
       "the JSON header is malformed: [json.exception.parse_error.101] parse error at line 1, "
       "column 2: ", true},
      {"metadata not an object", file_with_header(R"({"__metadata__":[]})", 0),
       "__metadata__ must be an object of strings, not a array"},
      {"metadata value not a string", file_with_header(R"({"__metadata__":{"epoch":3}})", 0),
       "__metadata__ key 'epoch' holds a number, not a string"},
      {"entry not an object", file_with_header(R"({"w":[0,8]})", 8),
       "tensor 'w': the entry must be an object, not a array"},
      {"missing dtype", file_with_header(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor 'w': missing field 'dtype'"},
      {"missing shape", file_with_header(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8),
       "tensor 'w': missing field 'shape'"},
      {"missing data_offsets", file_with_header(R"({"w":{"dtype":"F32","shape":[2]}})", 8),
       "tensor 'w': missing field 'data_offsets'"},
      {"unknown field",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"stride":[1]}})", 8),
       "tensor 'w': unknown field 'stride' (expected dtype, shape, data_offsets)"},
      {"dtype not a string", file_with_header(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor 'w': dtype must be a string, not a number"},
      {"unknown dtype", file_with_header("{" + entry("w", "F33", "[2]", "[0,8]") + "}", 8),
       "tensor 'w': unknown dtype 'F33'"},
      {"lower-case dtype", file_with_header("{" + entry("w", "f32", "[2]", "[0,8]") + "}", 8),
       "tensor 'w': unknown dtype 'f32'"},
      {"sub-byte dtype", file_with_header("{" + entry("w", "F4", "[2]", "[0,1]") + "}", 1),
       "tensor 'w': sub-byte dtype 'F4' is not supported"},
      {"shape not an array", file_with_header("{" + entry("w", "F32", "2", "[0,8]") + "}", 8),
       "tensor 'w': shape must be an array, not a number"},
      {"negative dimension", file_with_header("{" + entry("w", "F32", "[-2]", "[0,8]") + "}", 8),
       "tensor 'w': shape[0] must be a non-negative integer, not -2"},
      {"fractional dimension", file_with_header("{" + entry("w", "F32", "[2.0]", "[0,8]") + "}", 8),
       "tensor 'w': shape[0] must be a non-negative integer, not 2.0"},
      {"string dimension", file_with_header("{" + entry("w", "F32", "[\"2\"]", "[0,8]") + "}", 8),
       "tensor 'w': shape[0] must be a non-negative integer, not a string"},
      {"dimension above int64", file_with_header("{" + entry("w", "U8", "[9223372036854775808]", "[0,8]") + "}", 8),
       "tensor 'w': shape[0] = 9223372036854775808 is out of range"},
      {"dimension above uint64", file_with_header("{" + entry("w", "U8", "[18446744073709551616]", "[0,8]") + "}", 8),
       "tensor 'w': shape[0] must be a non-negative integer, not 1.8446744073709552e+19"},
      {"offsets not a pair", file_with_header("{" + entry("w", "F32", "[2]", "[0,4,8]") + "}", 8),
       "tensor 'w': data_offsets must be an array [begin, end], not an array of 3 elements"},
      {"offsets not an array", file_with_header("{" + entry("w", "F32", "[2]", "8") + "}", 8),
       "tensor 'w': data_offsets must be an array [begin, end], not a number"},
      {"negative offset", file_with_header("{" + entry("w", "F32", "[2]", "[-8,0]") + "}", 8),
       "tensor 'w': data_offsets[0] must be a non-negative integer, not -8"},
      {"shape product overflows",
       file_with_header("{" + entry("w", "F32", "[4294967296,4294967296,2]", "[0,8]") + "}", 8),
       "tensor 'w': shape [4294967296, 4294967296, 2] of F32 overflows 64 bits of bytes"},
      {"bytes overflow by the element size",
       file_with_header("{" + entry("w", "F64", "[2305843009213693952]", "[0,8]") + "}", 8),
       "tensor 'w': shape [2305843009213693952] of F64 overflows 64 bits of bytes"},
      {"end before begin", file_with_header("{" + entry("w", "F32", "[2]", "[8,0]") + "}", 8),
       "tensor 'w': data_offsets [8, 0] end before they begin"},
      {"offsets disagree with the shape",
       file_with_header("{" + entry("critic.w1", "F32", "[32,64]", "[0,4096]") + "}", 4096),
       "tensor 'critic.w1': data_offsets [0, 4096] do not match shape [32, 64] of F32 (8192 bytes)"},
      {"offsets past the buffer", file_with_header("{" + entry("w", "F32", "[2]", "[8,16]") + "}", 12),
       "tensor 'w': data_offsets [8, 16] lie outside the data buffer (12 bytes)"},
      {"offsets near 2^64",
       file_with_header("{" + entry("w", "U8", "[8]", "[18446744073709551608,18446744073709551615]") + "}", 8),
       "tensor 'w': data_offsets [18446744073709551608, 18446744073709551615] do not match shape "
       "[8] of U8 (8 bytes)"},
      {"overlapping tensors",
       file_with_header("{" + w + "," + entry("v", "F32", "[2]", "[4,12]") + "}", 12),
       "tensor 'v': data_offsets [4, 12] overlap tensor 'w' [0, 8]"},
      {"same offsets twice",
       file_with_header("{" + w + "," + entry("v", "F32", "[2]", "[0,8]") + "}", 8),
       "tensor 'w': data_offsets [0, 8] overlap tensor 'v' [0, 8]"},
      {"empty tensor inside another",
       file_with_header("{" + w + "," + entry("v", "F32", "[0]", "[4,4]") + "}", 8),
       "tensor 'v': data_offsets [4, 4] overlap tensor 'w' [0, 8]"},
      {"gap at the start", file_with_header("{" + entry("w", "F32", "[2]", "[4,12]") + "}", 12),
       "tensor 'w': data_offsets [4, 12] leave a gap of 4 bytes after the start of the data buffer"},
      {"gap between tensors",
       file_with_header("{" + w + "," + entry("v", "F32", "[1]", "[12,16]") + "}", 16),
       "tensor 'v': data_offsets [12, 16] leave a gap of 4 bytes after tensor 'w'"},
      {"bytes after the last tensor", file_with_header("{" + w + "}", 10),
       "the tensors cover 8 bytes but the data buffer holds 10 (2 trailing bytes belong to no tensor)"},
      {"data but no tensors", file_with_header("{}", 3),
       "the tensors cover 0 bytes but the data buffer holds 3 (3 trailing bytes belong to no tensor)"},
      {"duplicate tensor name", file_with_header("{" + w + "," + w + "}", 8),
       "header: duplicate tensor name 'w'"},
      {"duplicate field",
       file_with_header(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       "header: entry 'w': duplicate key 'dtype'"},
      {"duplicate metadata key", file_with_header(R"({"__metadata__":{"a":"1","a":"2"}})", 0),
       "header: entry '__metadata__': duplicate key 'a'"},
      {"duplicate __metadata__", file_with_header(R"({"__metadata__":{},"__metadata__":{}})", 0),
       "header: duplicate tensor name '__metadata__'"},
      {"name with a newline",
       file_with_header("{" + entry("a\\nb\\u0001", "F32", "[2]", "[0,8]") + "}", 4),
       "tensor 'a\\nb\\x01': data_offsets [0, 8] lie outside the data buffer (4 bytes)"},
      {"shape with too many dimensions",
       file_with_header("{" + entry("w", "U8", "[" + [] {
         std::string s = "1";
         for (int i = 0; i < 64; ++i) s += ",1";
         return s;
       }() + "]", "[0,1]") + "}", 1),
       "header: an array in entry 'w' holds more than 64 elements"},
      {"deep nesting", file_with_header(R"({"w":{"dtype":"F32","x":[[[[[[[[[[[]]]]]]]]]]}})", 0),
       "header: JSON nested deeper than 8 levels in entry 'w'"},
  };
}

TEST(Safetensors, RefusesEveryMalformedFileNamingTheFileAndField) {
  for (const MalformedCase& c : malformed_cases()) {
    const std::string message = error_of([&] { parse_string(c.bytes, "bad.safetensors"); });
    expect_message(message, "bad.safetensors: " + c.message, c.prefix_only, c.what);
  }
}

TEST(Safetensors, TheFileReaderRefusesThemWithTheSameMessages) {
  TempFolder dir;
  const std::string path = dir.file("bad.safetensors");
  for (const MalformedCase& c : malformed_cases()) {
    write_file_bytes(path, c.bytes);
    expect_message(error_of([&] { zscrgan::read_safetensors(path); }), path + ": " + c.message,
                   c.prefix_only, c.what);
  }
}

TEST(Safetensors, SurvivesVeryDeepNestingWithoutRecursing) {
  for (const char* open : {"[", "{\"a\":"}) {
    std::string header = "{\"w\":";
    for (int i = 0; i < 1000000; ++i) header += open;
    const std::string message =
        error_of([&] { parse_string(file_with_header(header, 0), "deep.safetensors"); });
    EXPECT_EQ(message, "deep.safetensors: header: JSON nested deeper than 8 levels in entry 'w'");
  }
}

TEST(Safetensors, AcceptsTrailingPaddingAndAnyEntryOrder) {
  const std::string header = "{" + entry("v", "F32", "[1]", "[8,12]") + "," +
                             entry("w", "F32", "[2]", "[0,8]") + "," +
                             entry("e", "I64", "[0,3]", "[12,12]") + "}        ";
  const SafeTensorsFile f = parse_string(file_with_header(header, 12), "ok");
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].name, "w");  // file order: by data offset
  EXPECT_EQ(f.tensors[1].name, "v");
  EXPECT_EQ(f.tensors[2].name, "e");
  EXPECT_EQ(f.at("v").bytes.size(), 4u);
}

TEST(Safetensors, ReadReportsMissingFilesAndFolders) {
  TempFolder dir;
  const std::string missing = dir.file("nope.safetensors");
  EXPECT_EQ(error_of([&] { zscrgan::read_safetensors(missing); }),
            missing + ": cannot open: No such file or directory");
  EXPECT_EQ(error_of([&] { zscrgan::read_safetensors(dir.path().string()); }),
            dir.path().string() + ": cannot open: is a directory");
}

// ---- truncation and corruption ----------------------------------------------------------------

TEST(Safetensors, RefusesTheFileTruncatedAtEveryLength) {
  const std::string full = to_string(zscrgan::serialize_safetensors(sample_file()));
  ASSERT_NO_THROW(parse_string(full, "full"));
  TempFolder dir;
  const std::string path = dir.file("cut.safetensors");
  for (size_t len = 0; len < full.size(); ++len) {
    const std::string cut = full.substr(0, len);
    const std::string m = error_of([&] { parse_string(cut, "cut.safetensors"); });
    EXPECT_EQ(m.rfind("cut.safetensors: ", 0), 0u) << "length " << len << ": " << m;
    write_file_bytes(path, cut);
    const std::string r = error_of([&] { zscrgan::read_safetensors(path); });
    EXPECT_EQ(r.rfind(path + ": ", 0), 0u) << "length " << len << ": " << r;
  }
}

TEST(Safetensors, RandomByteFlipsNeverCrash) {
  const std::string valid = to_string(zscrgan::serialize_safetensors(sample_file()));
  const size_t header_end = 8 + static_cast<size_t>(valid[0] & 0xff) +
                            (static_cast<size_t>(valid[1] & 0xff) << 8);
  std::mt19937_64 rng(20240611);
  int parsed = 0, refused = 0;
  const std::string flip_to = "{}[]\",:0123456789-. eE\\u";
  for (int iter = 0; iter < 5000; ++iter) {
    std::string bytes = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Most flips land in the size field and the header, where the parsing happens.
      const size_t span = rng() % 4 == 0 ? bytes.size() : header_end;
      const size_t pos = rng() % span;
      switch (rng() % 3) {
        case 0: bytes[pos] = static_cast<char>(rng()); break;
        case 1: bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << (rng() % 8))); break;
        default: bytes[pos] = flip_to[rng() % flip_to.size()]; break;
      }
    }
    try {
      const SafeTensorsFile f = parse_string(bytes, "flip");
      ++parsed;
      // Whatever parses must write back out and parse to the same content.
      const SafeTensorsFile g = parse_string(to_string(zscrgan::serialize_safetensors(f)), "again");
      expect_same_content(f, g);
    } catch (const zscrgan::Error& e) {
      ++refused;
      const std::string m = e.what();
      ASSERT_EQ(m.rfind("flip: ", 0), 0u) << m;
      // One printable line whatever the bytes were.
      ASSERT_TRUE(std::none_of(m.begin(), m.end(), [](char c) { return c >= 0 && c < 0x20; })) << m;
    }
  }
  EXPECT_EQ(parsed + refused, 5000);
  EXPECT_GT(refused, 0);
  EXPECT_GT(parsed, 0);  // flips inside tensor data leave a valid file
  std::printf("byte flips: %d parsed, %d refused\n", parsed, refused);
}

// ---- typed accessors and the writer's own checks ----------------------------------------------

TEST(Safetensors, AccessorsCheckDtypeAndShapeNamingTheTensor) {
  const SafeTensorsFile f = parse_string(to_string(zscrgan::serialize_safetensors(sample_file())),
                                         "ckpt/last.safetensors");
  EXPECT_EQ(error_of([&] { f.f32("param/critic.w1", {3, 4}); }),
            "ckpt/last.safetensors: tensor 'param/critic.w1' has shape [4, 3], expected [3, 4]");
  EXPECT_EQ(error_of([&] { f.f32("state/steps", {}); }),
            "ckpt/last.safetensors: tensor 'state/steps' has dtype 'I64', expected F32");
  EXPECT_EQ(error_of([&] { f.i64("param/critic.b1", {3}); }),
            "ckpt/last.safetensors: tensor 'param/critic.b1' has dtype 'F32', expected I64, I32 or U64");
  EXPECT_EQ(error_of([&] { f.at("param/nope"); }),
            "ckpt/last.safetensors: no tensor 'param/nope'");
  EXPECT_EQ(error_of([&] { zscrgan::as_f32(f.at("raw")); }),
            "tensor 'raw' has dtype 'U8', expected F32");

  SafeTensor big;
  big.name = "cursor";
  big.dtype = "U64";
  big.shape = {2};
  big.bytes.assign(16, 0xff);
  big.bytes[7] = 0x7f;  // element 0 = INT64_MAX, element 1 = 2^64 - 1
  EXPECT_EQ(error_of([&] { zscrgan::as_i64(big); }),
            "tensor 'cursor': U64 element 1 = 18446744073709551615 does not fit in int64");
  big.bytes[15] = 0x7f;
  EXPECT_EQ(zscrgan::as_i64(big), (std::vector<int64_t>{INT64_MAX, INT64_MAX}));

  SafeTensor inconsistent = zscrgan::make_f32_tensor("x", {2}, std::vector<float>{1, 2}.data());
  inconsistent.bytes.resize(4);
  EXPECT_EQ(error_of([&] { zscrgan::as_f32(inconsistent); }),
            "tensor 'x': holds 4 bytes, not 2 elements of F32");
  EXPECT_EQ(error_of([&] { zscrgan::make_f32_tensor("y", {2, -1}, nullptr); }),
            "make_f32_tensor: tensor 'y': shape [2, -1] has a negative dimension or overflows");
  EXPECT_EQ(error_of([&] { zscrgan::make_i64_tensor("z", {2}, nullptr); }),
            "make_i64_tensor: tensor 'z': data is null");
}

TEST(Safetensors, WriterRefusesInconsistentContentBeforeTouchingTheDisk) {
  TempFolder dir;
  const std::string path = dir.file("w.safetensors");
  const float x[2] = {1, 2};
  struct Case {
    const char* what;
    std::function<void(SafeTensorsFile&)> spoil;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"duplicate name",
       [&](SafeTensorsFile& f) { f.tensors.push_back(zscrgan::make_f32_tensor("a", {2}, x)); },
       ": duplicate tensor name 'a'"},
      {"reserved name", [&](SafeTensorsFile& f) { f.tensors[0].name = "__metadata__"; },
       ": tensor '__metadata__': the name is reserved for the metadata"},
      {"unknown dtype", [&](SafeTensorsFile& f) { f.tensors[0].dtype = "F128"; },
       ": tensor 'a': unknown dtype 'F128'"},
      {"bytes do not match the shape", [&](SafeTensorsFile& f) { f.tensors[0].shape = {3}; },
       ": tensor 'a': holds 8 bytes but shape [3] of F32 needs 12"},
      {"negative dimension", [&](SafeTensorsFile& f) { f.tensors[0].shape = {-2}; },
       ": tensor 'a': shape [-2] has a negative dimension or overflows"},
      {"invalid UTF-8 name", [&](SafeTensorsFile& f) { f.tensors[0].name = "a\xc3"; },
       ": tensor name 'a\\xc3' is not valid UTF-8"},
      {"invalid UTF-8 metadata", [&](SafeTensorsFile& f) { f.metadata["k"] = "\xff"; },
       ": the value of metadata key 'k', '\\xff' is not valid UTF-8"},
  };
  for (const Case& c : cases) {
    SafeTensorsFile f;
    f.tensors.push_back(zscrgan::make_f32_tensor("a", {2}, x));
    c.spoil(f);
    EXPECT_EQ(error_of([&] { zscrgan::write_safetensors_atomic(path, f); }), path + c.message)
        << c.what;
    EXPECT_EQ(error_of([&] { zscrgan::serialize_safetensors(f); }),
              "serialize_safetensors" + c.message)
        << c.what;
    EXPECT_FALSE(std::filesystem::exists(path)) << c.what;
    EXPECT_EQ(zscrgan_test::temporaries(path), 0) << c.what;
  }
}

// ---- failed writes leave the previous file ----------------------------------------------------

TEST(Safetensors, WriteIntoAMissingFolderFailsCleanly) {
  TempFolder dir;
  const std::string path = dir.file("no/such/folder/ckpt.safetensors");
  EXPECT_TRUE(zscrgan_test::matches(error_of([&] { zscrgan::write_safetensors_atomic(path, sample_file()); }),
              path + ": cannot create '" + path +
                                      "\\.tmp-[0-9a-f]{12}': No such file or directory"));
}

// The file-size limit makes write() fail part-way with EFBIG, as a full disk fails with ENOSPC:
// a real failure in the middle of the data, with no test hook in the library.
TEST(Safetensors, FailedWriteLeavesThePreviousFileAndNoTemporary) {
  TempFolder dir;
  const std::string path = dir.file("ckpt.safetensors");
  zscrgan::write_safetensors_atomic(path, sample_file());
  const std::string before = read_file_bytes(path);

  SafeTensorsFile bigger;
  std::vector<float> data(1 << 16, 3.0f);  // 256 KiB
  bigger.tensors.push_back(zscrgan::make_f32_tensor("w", {1 << 16}, data.data()));

  std::string message;
  {
    zscrgan_test::ScopedFileSizeLimit limit(64 * 1024);
    ASSERT_TRUE(limit.ok());
    message = error_of([&] { zscrgan::write_safetensors_atomic(path, bigger); });
  }

  EXPECT_TRUE(zscrgan_test::matches(message, path + ": cannot write '" + path +
                                               "\\.tmp-[0-9a-f]{12}': File too large"));
  EXPECT_EQ(zscrgan_test::temporaries(path), 0);
  EXPECT_EQ(read_file_bytes(path), before);
  expect_same_content(sample_file(), zscrgan::read_safetensors(path));
}

TEST(Safetensors, FailedRenameLeavesTheTargetAndNoTemporary) {
  TempFolder dir;
  const std::string path = dir.file("taken");
  std::filesystem::create_directories(path + "/inside");
  const std::string message =
      error_of([&] { zscrgan::write_safetensors_atomic(path, sample_file()); });
  EXPECT_TRUE(zscrgan_test::matches(message, path + ": cannot rename '" + path +
                                               "\\.tmp-[0-9a-f]{12}' over it: Is a directory"));
  EXPECT_EQ(zscrgan_test::temporaries(path), 0);
  EXPECT_TRUE(std::filesystem::is_directory(path + "/inside"));
}

}  // namespace
