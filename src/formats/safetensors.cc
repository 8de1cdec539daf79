#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "core/error.h"
#include "core/fileio.h"

// Tensor bytes are copied to and from host arrays as they are: the format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace zscrgan {
namespace {

using nlohmann::json;

struct DtypeInfo {
  const char* name;
  size_t size;
};

// In the order of the safetensors library's Dtype enum: its writer orders tensors by this rank,
// highest first, and so does ours. The sub-byte types (F4, F6_E2M3, F6_E3M2) are left out.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"C64", 8}, {"F64", 8},  {"I64", 8},     {"U64", 8},
};

int dtype_rank(const std::string& dtype) {
  for (size_t i = 0; i < sizeof(kDtypes) / sizeof(kDtypes[0]); ++i)
    if (dtype == kDtypes[i].name) return static_cast<int>(i);
  return -1;
}

bool is_sub_byte_dtype(const std::string& dtype) {
  return dtype == "F4" || dtype == "F6_E2M3" || dtype == "F6_E3M2";
}

std::string sys_error(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string offsets_str(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// shape product * elem_size; false when a dimension is negative or the product overflows.
// A zero dimension makes the product zero whatever the others hold.
bool checked_byte_count(const std::vector<int64_t>& shape, uint64_t elem_size, uint64_t* out) {
  for (int64_t d : shape)
    if (d < 0) return false;
  for (int64_t d : shape)
    if (d == 0) {
      *out = 0;
      return true;
    }
  uint64_t n = elem_size;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  *out = n;
  return true;
}

uint64_t read_le_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- header parsing ---------------------------------------------------------------------------

// A valid header nests three deep (root, entry, shape) and its arrays hold at most a shape's
// dimensions; the parser refuses anything far beyond that while parsing, so that a hostile
// header can neither exhaust the stack nor balloon into a huge document.
constexpr size_t kMaxJsonDepth = 8;
constexpr size_t kMaxArrayLength = 64;

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<Entry> entries;  // sorted by data_offsets
};

json parse_header_json(const char* text, size_t size, const std::string& src) {
  if (size == 0 || text[0] != '{')
    fail(src, ": the JSON header does not start with '{' (not a safetensors file?)");
  struct Frame {
    bool is_object;
    size_t count;
    std::set<std::string> keys;
  };
  std::vector<Frame> stack;
  std::string entry;  // the top-level key being parsed, for messages
  auto count_array_element = [&]() {
    if (!stack.empty() && !stack.back().is_object && ++stack.back().count > kMaxArrayLength)
      fail(src, ": header: an array in ", entry.empty() ? "the header" : "entry " + in_quotes(entry),
           " holds more than ", kMaxArrayLength, " elements");
  };
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        count_array_element();
        if (stack.size() >= kMaxJsonDepth)
          fail(src, ": header: JSON nested deeper than ", kMaxJsonDepth, " levels in ",
               entry.empty() ? "the header" : "entry " + in_quotes(entry));
        stack.push_back({event == json::parse_event_t::object_start, 0, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (stack.size() == 1) entry = key;
        if (!stack.back().keys.insert(key).second) {
          if (stack.size() == 1) fail(src, ": header: duplicate tensor name ", in_quotes(key));
          fail(src, ": header: entry ", in_quotes(entry), ": duplicate key ", in_quotes(key));
        }
        break;
      }
      case json::parse_event_t::value:
        count_array_element();
        break;
    }
    return true;
  };
  try {
    return json::parse(text, text + size, callback, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(src, ": the JSON header is malformed: ", printable(e.what(), 400));
  }
}

uint64_t unsigned_field(const json& v, const std::string& where, const std::string& field) {
  if (!v.is_number_unsigned())
    fail(where, ": ", field, " must be a non-negative integer, not ",
         v.is_number() ? printable(v.dump()) : std::string("a ") + v.type_name());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& v, uint64_t buffer_size,
                  const std::string& src) {
  const std::string where = src + ": tensor " + in_quotes(name);
  if (!v.is_object()) fail(where, ": the entry must be an object, not a ", v.type_name());
  for (const auto& item : v.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      fail(where, ": unknown field ", in_quotes(item.key()),
           " (expected dtype, shape, data_offsets)");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) fail(where, ": missing field '", field, "'");

  Entry e;
  e.name = name;
  const json& dtype = v["dtype"];
  if (!dtype.is_string()) fail(where, ": dtype must be a string, not a ", dtype.type_name());
  e.dtype = dtype.get<std::string>();
  const size_t elem_size = safetensors_dtype_size(e.dtype);
  if (elem_size == 0) {
    if (is_sub_byte_dtype(e.dtype)) fail(where, ": sub-byte dtype ", in_quotes(e.dtype), " is not supported");
    fail(where, ": unknown dtype ", in_quotes(e.dtype));
  }

  const json& shape = v["shape"];
  if (!shape.is_array()) fail(where, ": shape must be an array, not a ", shape.type_name());
  for (size_t i = 0; i < shape.size(); ++i) {
    const uint64_t d = unsigned_field(shape[i], where, "shape[" + std::to_string(i) + "]");
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(where, ": shape[", i, "] = ", d, " is out of range");
    e.shape.push_back(static_cast<int64_t>(d));
  }

  const json& offsets = v["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(where, ": data_offsets must be an array [begin, end], not ",
         offsets.is_array() ? "an array of " + std::to_string(offsets.size()) + " elements"
                            : std::string("a ") + offsets.type_name());
  e.begin = unsigned_field(offsets[0], where, "data_offsets[0]");
  e.end = unsigned_field(offsets[1], where, "data_offsets[1]");

  uint64_t nbytes = 0;
  if (!checked_byte_count(e.shape, elem_size, &nbytes))
    fail(where, ": shape ", shape_str(e.shape), " of ", e.dtype, " overflows 64 bits of bytes");
  if (e.end < e.begin)
    fail(where, ": data_offsets ", offsets_str(e.begin, e.end), " end before they begin");
  if (e.end - e.begin != nbytes)
    fail(where, ": data_offsets ", offsets_str(e.begin, e.end), " do not match shape ",
         shape_str(e.shape), " of ", e.dtype, " (", nbytes, " bytes)");
  if (e.end > buffer_size)
    fail(where, ": data_offsets ", offsets_str(e.begin, e.end),
         " lie outside the data buffer (", buffer_size, " bytes)");
  return e;
}

// Validates a header against the size of the data buffer that follows it.
Header parse_header(const char* text, size_t size, uint64_t buffer_size, const std::string& src) {
  const json root = parse_header_json(text, size, src);
  Header h;
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    const json& value = item.value();
    if (key == "__metadata__") {
      if (!value.is_object())
        fail(src, ": __metadata__ must be an object of strings, not a ", value.type_name());
      for (const auto& m : value.items()) {
        if (!m.value().is_string())
          fail(src, ": __metadata__ key ", in_quotes(m.key()), " holds a ", m.value().type_name(),
               ", not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(key, value, buffer_size, src));
  }

  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < pos)
      fail(src, ": tensor ", in_quotes(e.name), ": data_offsets ", offsets_str(e.begin, e.end),
           " overlap tensor ", in_quotes(prev->name), " ", offsets_str(prev->begin, prev->end));
    if (e.begin > pos)
      fail(src, ": tensor ", in_quotes(e.name), ": data_offsets ", offsets_str(e.begin, e.end),
           " leave a gap of ", e.begin - pos, " bytes after ",
           prev ? "tensor " + in_quotes(prev->name) : std::string("the start of the data buffer"));
    pos = e.end;
    prev = &e;
  }
  if (pos != buffer_size)
    fail(src, ": the tensors cover ", pos, " bytes but the data buffer holds ", buffer_size,
         " (", buffer_size - pos, " trailing bytes belong to no tensor)");
  return h;
}

// Checks the 8-byte size field's value against the file's size; returns the data buffer's size.
uint64_t check_header_size(uint64_t header_size, uint64_t file_size, const std::string& src) {
  if (header_size > kSafetensorsMaxHeaderBytes)
    fail(src, ": header size ", header_size, " exceeds the limit of ", kSafetensorsMaxHeaderBytes,
         " bytes (not a safetensors file?)");
  if (header_size > file_size - 8)
    fail(src, ": header size ", header_size, " is larger than the ", file_size - 8,
         " bytes that follow the size field (truncated file?)");
  return file_size - 8 - header_size;
}

void check_min_size(uint64_t file_size, const std::string& src) {
  if (file_size < 8)
    fail(src, ": only ", file_size, " bytes, too short for a safetensors file (truncated?)");
}

// ---- writing ----------------------------------------------------------------------------------

std::string json_string(const std::string& s, const std::string& prefix, const std::string& what) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    fail(prefix, ": ", what, " ", in_quotes(s), " is not valid UTF-8");
  }
}

struct Layout {
  std::string header;                 // JSON padded with spaces to a multiple of 8
  std::vector<const SafeTensor*> order;  // data order
  uint64_t data_size = 0;
};

Layout plan_layout(const SafeTensorsFile& f, const std::string& prefix) {
  Layout out;
  std::set<std::string> names;
  for (const SafeTensor& t : f.tensors) {
    const std::string where = prefix + ": tensor " + in_quotes(t.name);
    if (t.name == "__metadata__") fail(where, ": the name is reserved for the metadata");
    if (!names.insert(t.name).second) fail(prefix, ": duplicate tensor name ", in_quotes(t.name));
    const size_t elem_size = safetensors_dtype_size(t.dtype);
    if (elem_size == 0) fail(where, ": unknown dtype ", in_quotes(t.dtype));
    uint64_t nbytes = 0;
    if (!checked_byte_count(t.shape, elem_size, &nbytes))
      fail(where, ": shape ", shape_str(t.shape), " has a negative dimension or overflows");
    if (t.bytes.size() != nbytes)
      fail(where, ": holds ", t.bytes.size(), " bytes but shape ", shape_str(t.shape), " of ",
           t.dtype, " needs ", nbytes);
    out.order.push_back(&t);
  }
  std::sort(out.order.begin(), out.order.end(), [](const SafeTensor* a, const SafeTensor* b) {
    const int ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });

  std::string& h = out.header;
  h = "{";
  if (!f.metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : f.metadata) {
      if (!first) h += ',';
      first = false;
      h += json_string(key, prefix, "metadata key");
      h += ':';
      h += json_string(value, prefix, "the value of metadata key " + in_quotes(key) + ",");
    }
    h += '}';
  }
  uint64_t pos = 0;
  for (const SafeTensor* t : out.order) {
    if (h.size() > 1) h += ',';
    h += json_string(t->name, prefix, "tensor name");
    h += ":{\"dtype\":\"" + t->dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(pos) + ",";
    pos += t->bytes.size();
    h += std::to_string(pos) + "]}";
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  if (h.size() > kSafetensorsMaxHeaderBytes)
    fail(prefix, ": the header would take ", h.size(), " bytes, above the limit of ",
         kSafetensorsMaxHeaderBytes);
  out.data_size = pos;
  return out;
}

void size_field(uint64_t v, uint8_t out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}


class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

}  // namespace

// ---- public API -------------------------------------------------------------------------------

size_t safetensors_dtype_size(const std::string& dtype) {
  const int r = dtype_rank(dtype);
  return r < 0 ? 0 : kDtypes[r].size;
}

int64_t SafeTensor::num_elements() const {
  uint64_t n = 0;
  if (!checked_byte_count(shape, 1, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail("tensor ", in_quotes(name), ": shape ", shape_str(shape),
         " has a negative dimension or overflows");
  return static_cast<int64_t>(n);
}

const SafeTensor* SafeTensorsFile::find(const std::string& name) const {
  for (const SafeTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const SafeTensor& SafeTensorsFile::at(const std::string& name) const {
  const SafeTensor* t = find(name);
  if (!t) fail(source.empty() ? "safetensors" : source, ": no tensor ", in_quotes(name));
  return *t;
}

std::vector<float> SafeTensorsFile::f32(const std::string& name,
                                        const std::vector<int64_t>& expected_shape) const {
  const SafeTensor& t = at(name);
  try {
    return as_f32(t, expected_shape);
  } catch (const Error& e) {
    if (source.empty()) throw;
    fail(source, ": ", e.what());
  }
}

std::vector<int64_t> SafeTensorsFile::i64(const std::string& name,
                                          const std::vector<int64_t>& expected_shape) const {
  const SafeTensor& t = at(name);
  try {
    return as_i64(t, expected_shape);
  } catch (const Error& e) {
    if (source.empty()) throw;
    fail(source, ": ", e.what());
  }
}

namespace {
SafeTensor make_tensor(const char* fn, const std::string& name, const char* dtype,
                       const std::vector<int64_t>& shape, const void* data) {
  uint64_t nbytes = 0;
  if (!checked_byte_count(shape, safetensors_dtype_size(dtype), &nbytes))
    fail(fn, ": tensor ", in_quotes(name), ": shape ", shape_str(shape),
         " has a negative dimension or overflows");
  if (nbytes > 0 && data == nullptr) fail(fn, ": tensor ", in_quotes(name), ": data is null");
  SafeTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = shape;
  t.bytes.resize(nbytes);
  if (nbytes > 0) std::memcpy(t.bytes.data(), data, nbytes);
  return t;
}

void check_elements(const SafeTensor& t, const std::vector<int64_t>* expected_shape) {
  if (expected_shape && t.shape != *expected_shape)
    fail("tensor ", in_quotes(t.name), " has shape ", shape_str(t.shape), ", expected ",
         shape_str(*expected_shape));
  const uint64_t n = static_cast<uint64_t>(t.num_elements());
  if (t.bytes.size() / safetensors_dtype_size(t.dtype) != n ||
      t.bytes.size() % safetensors_dtype_size(t.dtype) != 0)
    fail("tensor ", in_quotes(t.name), ": holds ", t.bytes.size(), " bytes, not ", n, " elements of ",
         t.dtype);
}

std::vector<float> to_f32(const SafeTensor& t, const std::vector<int64_t>* expected_shape) {
  if (t.dtype != "F32") fail("tensor ", in_quotes(t.name), " has dtype ", in_quotes(t.dtype), ", expected F32");
  check_elements(t, expected_shape);
  std::vector<float> out(t.bytes.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

std::vector<int64_t> to_i64(const SafeTensor& t, const std::vector<int64_t>* expected_shape) {
  if (t.dtype != "I64" && t.dtype != "I32" && t.dtype != "U64")
    fail("tensor ", in_quotes(t.name), " has dtype ", in_quotes(t.dtype), ", expected I64, I32 or U64");
  check_elements(t, expected_shape);
  const size_t elem = safetensors_dtype_size(t.dtype);
  std::vector<int64_t> out(t.bytes.size() / elem);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t* p = t.bytes.data() + i * elem;
    if (t.dtype == "I32") {
      int32_t v;
      std::memcpy(&v, p, 4);
      out[i] = v;
    } else if (t.dtype == "I64") {
      std::memcpy(&out[i], p, 8);
    } else {
      uint64_t v;
      std::memcpy(&v, p, 8);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("tensor ", in_quotes(t.name), ": U64 element ", i, " = ", v, " does not fit in int64");
      out[i] = static_cast<int64_t>(v);
    }
  }
  return out;
}
}  // namespace

SafeTensor make_f32_tensor(const std::string& name, const std::vector<int64_t>& shape,
                           const float* data) {
  return make_tensor("make_f32_tensor", name, "F32", shape, data);
}

SafeTensor make_i64_tensor(const std::string& name, const std::vector<int64_t>& shape,
                           const int64_t* data) {
  return make_tensor("make_i64_tensor", name, "I64", shape, data);
}

std::vector<float> as_f32(const SafeTensor& t) { return to_f32(t, nullptr); }
std::vector<float> as_f32(const SafeTensor& t, const std::vector<int64_t>& expected_shape) {
  return to_f32(t, &expected_shape);
}
std::vector<int64_t> as_i64(const SafeTensor& t) { return to_i64(t, nullptr); }
std::vector<int64_t> as_i64(const SafeTensor& t, const std::vector<int64_t>& expected_shape) {
  return to_i64(t, &expected_shape);
}

std::vector<uint8_t> serialize_safetensors(const SafeTensorsFile& f) {
  const Layout layout = plan_layout(f, "serialize_safetensors");
  std::vector<uint8_t> out(8 + layout.header.size() + layout.data_size);
  size_field(layout.header.size(), out.data());
  std::memcpy(out.data() + 8, layout.header.data(), layout.header.size());
  size_t pos = 8 + layout.header.size();
  for (const SafeTensor* t : layout.order) {
    if (!t->bytes.empty()) std::memcpy(out.data() + pos, t->bytes.data(), t->bytes.size());
    pos += t->bytes.size();
  }
  return out;
}

namespace {

// The one reading of a safetensors layout, for memory and files alike: `read_next(dst, n, what)`
// fills dst with the next n bytes. The header guarantees that the entries are contiguous and
// sorted by offset, so the tensor data is one sequential read after the header.
template <class ReadNext>
SafeTensorsFile read_in_order(uint64_t total_size, const std::string& source, ReadNext read_next) {
  check_min_size(total_size, source);
  uint8_t size_bytes[8];
  read_next(size_bytes, 8, "the header size");
  const uint64_t header_size = read_le_u64(size_bytes);
  const uint64_t buffer_size = check_header_size(header_size, total_size, source);
  std::string header(header_size, '\0');
  read_next(header.data(), header.size(), "the header");
  Header h = parse_header(header.data(), header.size(), buffer_size, source);

  SafeTensorsFile f;
  f.source = source;
  f.metadata = std::move(h.metadata);
  f.tensors.reserve(h.entries.size());
  for (Entry& e : h.entries) {
    SafeTensor t;
    t.name = std::move(e.name);
    t.dtype = std::move(e.dtype);
    t.shape = std::move(e.shape);
    t.bytes.resize(e.end - e.begin);
    read_next(t.bytes.data(), t.bytes.size(), ("tensor " + in_quotes(t.name)).c_str());
    f.tensors.push_back(std::move(t));
  }
  return f;
}

}  // namespace

SafeTensorsFile parse_safetensors(const uint8_t* data, size_t size,
                                  const std::string& source_name) {
  if (data == nullptr && size > 0) fail(source_name, ": no data");
  size_t pos = 0;
  // The sizes were checked against `size` before any read; this stays a guard.
  return read_in_order(size, source_name, [&](void* dst, size_t n, const char* what) {
    if (n > size - pos) fail(source_name, ": the data ended while reading ", what);
    if (n > 0) std::memcpy(dst, data + pos, n);
    pos += n;
  });
}

SafeTensorsFile read_safetensors(const std::string& path) {
  require_regular_file(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_file(path, ": cannot open: ", sys_error(errno));
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) fail_file(path, ": cannot stat: ", sys_error(errno));
  if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
  return read_in_order(static_cast<uint64_t>(st.st_size), path,
                       [&](void* dst, size_t n, const char* what) {
    const int err = read_fully(fd, dst, n);
    if (err == ENODATA)
      fail_file(path, ": the file ended while reading ", what, " (did it change while being read?)");
    if (err != 0) fail_file(path, ": cannot read ", what, ": ", sys_error(err));
  });
}

void write_safetensors_atomic(const std::string& path, const SafeTensorsFile& f) {
  const Layout layout = plan_layout(f, path);
  AtomicFile file(path);
  uint8_t size_bytes[8];
  size_field(layout.header.size(), size_bytes);
  file.write(size_bytes, 8);
  file.write(layout.header.data(), layout.header.size());
  for (const SafeTensor* t : layout.order) file.write(t->bytes.data(), t->bytes.size());
  file.commit();
}

}  // namespace zscrgan
