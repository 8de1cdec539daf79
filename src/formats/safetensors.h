// The safetensors format (https://github.com/huggingface/safetensors), the storage layer of
// training checkpoints: an 8-byte little-endian header size N, N bytes of JSON header, then the
// data buffer.
//
//   {"__metadata__": {"key": "value", ...},
//    "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//
// Offsets are relative to the start of the data buffer. The reader enforces the official rules
// and then some: the header is at most 100 MB and fits in the file, starts with '{' and may be
// padded with trailing spaces; it is valid UTF-8 JSON with no duplicate keys; tensor entries
// hold exactly dtype, shape and data_offsets; the dtype is known; shape product times element
// size equals end - begin (computed without overflow); the tensors are contiguous,
// non-overlapping and cover the buffer exactly. Every offset is checked before a byte is read,
// so no input, however corrupt, makes the reader read out of bounds; every refusal is one line
// naming the file and the tensor or field.
//
// The writer lays files out as the Python `safetensors` library does, byte for byte when there
// is at most one metadata key (the library's metadata order is a hash map's): compact JSON,
// "__metadata__" first (omitted when empty, keys sorted), tensors ordered by dtype (the
// library's dtype order, widest first) then name, header padded with spaces to a multiple of
// 8, so that every tensor is aligned to its element size.
#ifndef ZSCRGAN_SAFETENSORS_H
#define ZSCRGAN_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zscrgan {

// The official limit on the JSON header's size.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000;

// Bytes per element of a dtype name ("F32" -> 4); 0 for a name this reader does not know
// (including the sub-byte F4 / F6_* types, which it does not support).
size_t safetensors_dtype_size(const std::string& dtype);

struct SafeTensor {
  std::string name;
  std::string dtype;           // "F32", "I64", ... (see safetensors_dtype_size)
  std::vector<int64_t> shape;  // row-major; {} is a scalar (one element)
  std::vector<uint8_t> bytes;  // little-endian elements, shape product * dtype size bytes

  // Product of the shape (1 for a scalar).
  int64_t num_elements() const;
};

struct SafeTensorsFile {
  std::string source;  // where it was read from, for messages; empty when built in memory
  std::map<std::string, std::string> metadata;
  std::vector<SafeTensor> tensors;  // when read: in the order of their data in the file

  // nullptr when there is no tensor of that name.
  const SafeTensor* find(const std::string& name) const;
  // Throws "<source>: no tensor '<name>'" when there is none.
  const SafeTensor& at(const std::string& name) const;
  // at(name) converted with as_f32 / as_i64 and checked against the expected shape; errors
  // name the source and the tensor.
  std::vector<float> f32(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  std::vector<int64_t> i64(const std::string& name,
                           const std::vector<int64_t>& expected_shape) const;
};

// Tensors built from host arrays holding the shape's product of elements.
SafeTensor make_f32_tensor(const std::string& name, const std::vector<int64_t>& shape,
                           const float* data);
SafeTensor make_i64_tensor(const std::string& name, const std::vector<int64_t>& shape,
                           const int64_t* data);

// The elements of an F32 tensor. Throws, naming the tensor, on any other dtype, or when
// expected_shape is given and differs.
std::vector<float> as_f32(const SafeTensor& t);
std::vector<float> as_f32(const SafeTensor& t, const std::vector<int64_t>& expected_shape);
// The elements of an I64, I32 or U64 tensor as int64 (a U64 value above INT64_MAX is refused).
std::vector<int64_t> as_i64(const SafeTensor& t);
std::vector<int64_t> as_i64(const SafeTensor& t, const std::vector<int64_t>& expected_shape);

// The whole file as bytes. Throws, naming the tensor, when a name repeats or is
// "__metadata__", a dtype is unknown, a dimension is negative, the byte count does not match
// the shape, or a string is not valid UTF-8.
std::vector<uint8_t> serialize_safetensors(const SafeTensorsFile& f);

// Parses and validates a complete file held in memory; source_name prefixes every message.
SafeTensorsFile parse_safetensors(const uint8_t* data, size_t size,
                                  const std::string& source_name);

// Reads and validates a file; the header is checked against the file's size before any tensor
// data is read, and each tensor's bytes are read straight into its vector.
SafeTensorsFile read_safetensors(const std::string& path);

// Writes a uniquely named temporary sibling `path + ".tmp-<suffix>"` (write, fsync), renames it
// over `path`, then fsyncs the directory: a crash at any instant leaves either the previous
// file or the new one at `path`; temporaries that killed writers left are removed after the
// rename. The content is validated before anything is created. On failure (disk full,
// permission, missing directory) the temporary file is removed, `path` is untouched, and the
// error names the path and the system's reason.
void write_safetensors_atomic(const std::string& path, const SafeTensorsFile& f);

}  // namespace zscrgan

#endif  // ZSCRGAN_SAFETENSORS_H
