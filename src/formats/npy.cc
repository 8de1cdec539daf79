// NumPy .npy reader and writer. Format reference: numpy/lib/format.py (versions 1.0-3.0):
//   "\x93NUMPY" major minor, header length (uint16 LE for 1.0, uint32 LE for 2.0/3.0),
//   a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with
//   spaces and ended by '\n', then the raw array data.
#include "formats/npy.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "core/fileio.h"
#include "npy_format.h"
#include "core/error.h"

namespace zscrgan {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy pads the header so the data starts 64-byte aligned

using Kind = detail::NpyKind;
using Dtype = detail::NpyDtype;
using Header = detail::NpyHeader;
using detail::host_is_little_endian;
std::string shape_text(const std::vector<int64_t>& shape) { return detail::npy_shape_text(shape); }

// The header as a message quotes it: without its padding, escaped, at most 80 bytes.
std::string excerpt(const std::string& s) {
  std::string out = s;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return printable(out, 80);
}

// A parser for the small subset of Python literals numpy writes in the header.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : t_(text), path_(path) {}

  struct Value {
    enum Type { kString, kBool, kTuple, kList } type = kString;
    std::string str;
    bool boolean = false;
    std::vector<int64_t> ints;
  };

  std::map<std::string, Value> parse_dict() {
    std::map<std::string, Value> dict;
    skip_ws();
    expect('{');
    skip_ws();
    while (peek() != '}') {
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (dict.count(key)) bad("key " + in_quotes(key) + " appears twice");
      dict[key] = parse_value();
      skip_ws();
      if (peek() == ',') {
        ++i_;
        skip_ws();
      } else if (peek() != '}') {
        bad("expected ',' or '}'");
      }
    }
    ++i_;
    skip_ws();
    if (i_ != t_.size()) bad("unexpected text after the dictionary");
    return dict;
  }

 private:
  [[noreturn]] void bad(const std::string& why) const {
    fail(path_, ": malformed .npy header: ", why, " (header: ", excerpt(t_), ")");
  }
  char peek() const {
    if (i_ >= t_.size()) bad("unexpected end");
    return t_[i_];
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' ||
                              t_[i_] == '\r'))
      ++i_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    ++i_;
    std::string s;
    while (peek() != q) {
      if (t_[i_] == '\\') bad("escape sequences are not supported");
      s += t_[i_++];
    }
    ++i_;
    return s;
  }
  Value parse_value() {
    Value v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.type = Value::kString;
      v.str = parse_string();
    } else if (t_.compare(i_, 4, "True") == 0) {
      v.type = Value::kBool;
      v.boolean = true;
      i_ += 4;
    } else if (t_.compare(i_, 5, "False") == 0) {
      v.type = Value::kBool;
      v.boolean = false;
      i_ += 5;
    } else if (c == '(') {
      v.type = Value::kTuple;
      ++i_;
      skip_ws();
      while (peek() != ')') {
        v.ints.push_back(parse_int());
        skip_ws();
        if (peek() == ',') {
          ++i_;
          skip_ws();
        } else if (peek() != ')') {
          bad("expected ',' or ')' in the shape");
        }
      }
      ++i_;
    } else if (c == '[') {
      // A structured dtype (list of fields): skip to the matching bracket, reject later.
      v.type = Value::kList;
      int depth = 0;
      do {
        if (peek() == '[') ++depth;
        if (peek() == ']') --depth;
        ++i_;
      } while (depth > 0);
    } else {
      bad("unexpected value");
    }
    return v;
  }
  int64_t parse_int() {
    if (peek() < '0' || peek() > '9') bad("expected a non-negative integer in the shape");
    int64_t v = 0;
    while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') {
      const int d = t_[i_++] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - d) / 10) bad("shape value too large");
      v = v * 10 + d;
    }
    if (i_ < t_.size() && t_[i_] == 'L') ++i_;  // Python 2 longs: (3L, 4L)
    return v;
  }

  const std::string& t_;
  const std::string& path_;
  size_t i_ = 0;
};

Dtype parse_descr(const std::string& descr, const std::string& path) {
  Dtype d;
  d.descr = descr;
  if (descr.size() < 3) fail(path, ": unsupported dtype ", in_quotes(descr));
  const char order = descr[0];
  const char kind = descr[1];
  const std::string size = descr.substr(2);
  if (size.find_first_not_of("0123456789") != std::string::npos || size.size() > 3)
    fail(path, ": unsupported dtype ", in_quotes(descr));
  d.size = std::stoi(size);
  if (kind == 'f') d.kind = Kind::kFloat;
  else if (kind == 'i') d.kind = Kind::kInt;
  else d.kind = Kind::kOther;
  if (order == '>' && d.size > 1)
    fail(path, ": big-endian dtype ", in_quotes(descr), " is not supported; save as little-endian ('<",
         printable(std::string(1, kind)), size, "')");
  // '=' is native order, which numpy only writes on the machine that saved the file; '|' means
  // "not applicable". Both are read as little-endian, the only order numpy writes there.
  if (order != '<' && order != '=' && order != '|' && order != '>')
    fail(path, ": unsupported dtype ", in_quotes(descr));
  return d;
}

Header read_header(std::istream& in, const std::string& path) {
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  if (end < 0) fail_file(path, ": cannot determine the file size");
  in.seekg(0, std::ios::beg);
  Header h;
  h.file_size = static_cast<uint64_t>(end);

  unsigned char pre[12] = {};
  const size_t pre_len = std::min<uint64_t>(h.file_size, sizeof pre);
  in.read(reinterpret_cast<char*>(pre), static_cast<std::streamsize>(pre_len));
  if (pre_len < 10 || std::memcmp(pre, kMagic, kMagicLen) != 0) {
    if (pre_len >= kMagicLen && std::memcmp(pre, kMagic, kMagicLen) == 0)
      fail(path, ": truncated: the file ends inside the .npy preamble (", h.file_size,
           " bytes)");
    fail(path, ": not a .npy file (bad magic; expected \\x93NUMPY)");
  }
  const int major = pre[6], minor = pre[7];
  if (!(major >= 1 && major <= 3 && minor == 0))
    fail(path, ": unsupported .npy format version ", major, ".", minor,
         " (supported: 1.0, 2.0, 3.0)");
  uint64_t header_len;
  size_t prefix;
  if (major == 1) {
    header_len = pre[8] | (static_cast<uint64_t>(pre[9]) << 8);
    prefix = 10;
  } else {
    if (pre_len < 12) fail(path, ": truncated: the file ends inside the .npy preamble");
    header_len = pre[8] | (static_cast<uint64_t>(pre[9]) << 8) |
                 (static_cast<uint64_t>(pre[10]) << 16) | (static_cast<uint64_t>(pre[11]) << 24);
    prefix = 12;
  }
  if (prefix + header_len > h.file_size)
    fail(path, ": truncated: the header says it is ", header_len, " bytes but the file has ",
         h.file_size - prefix, " after the preamble");
  std::string text(header_len, '\0');
  in.seekg(static_cast<std::streamoff>(prefix), std::ios::beg);
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (!in) fail_file(path, ": read error in the .npy header");
  h.data_offset = prefix + header_len;

  HeaderParser parser(text, path);
  const auto dict = parser.parse_dict();
  for (const char* key : {"descr", "fortran_order", "shape"})
    if (!dict.count(key))
      fail(path, ": malformed .npy header: missing '", key, "' (header: ", excerpt(text), ")");
  for (const auto& kv : dict)
    if (kv.first != "descr" && kv.first != "fortran_order" && kv.first != "shape")
      fail(path, ": malformed .npy header: unexpected key ", in_quotes(kv.first));
  const auto& descr = dict.at("descr");
  if (descr.type == HeaderParser::Value::kList)
    fail(path, ": structured dtypes are not supported (plain float or int arrays only)");
  if (descr.type != HeaderParser::Value::kString)
    fail(path, ": malformed .npy header: 'descr' is not a string");
  const auto& fortran = dict.at("fortran_order");
  if (fortran.type != HeaderParser::Value::kBool)
    fail(path, ": malformed .npy header: 'fortran_order' is not True or False");
  if (fortran.boolean)
    fail(path, ": fortran_order is True: only C-order arrays are supported "
               "(save with numpy.ascontiguousarray)");
  const auto& shape = dict.at("shape");
  if (shape.type != HeaderParser::Value::kTuple)
    fail(path, ": malformed .npy header: 'shape' is not a tuple");
  h.shape = shape.ints;
  h.dtype = parse_descr(descr.str, path);
  return h;
}

// Checks the element count against the bytes after the header; returns the element count.
int64_t check_size(const Header& h, const std::string& path) {
  uint64_t count = 1;
  for (int64_t s : h.shape) {
    if (s != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(s))
      fail(path, ": shape ", shape_text(h.shape), " is too large");
    count *= static_cast<uint64_t>(s);
  }
  const uint64_t need = count * static_cast<uint64_t>(h.dtype.size);
  const uint64_t have = h.file_size - h.data_offset;
  if (need != have) {
    std::ostringstream what;
    for (size_t i = 0; i < h.shape.size(); ++i) what << (i ? " x " : "") << h.shape[i];
    if (h.shape.empty()) what << "a scalar";
    fail(path, need > have ? ": truncated: " : ": size mismatch: ", "header says ", what.str(),
         " ", h.dtype.name(), " (", need, " bytes of data) but the file has ", have);
  }
  return static_cast<int64_t>(count);
}

// Reads `count` elements of `size` bytes each into `dst`, converting to host byte order.
void read_raw(std::ifstream& in, const Header& h, void* dst, int64_t count,
              const std::string& path) {
  const uint64_t bytes = static_cast<uint64_t>(count) * static_cast<uint64_t>(h.dtype.size);
  in.seekg(static_cast<std::streamoff>(h.data_offset), std::ios::beg);
  in.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes));
  if (!in || static_cast<uint64_t>(in.gcount()) != bytes)
    fail_file(path, ": read error in the array data");
  if (!host_is_little_endian()) {
    auto* p = static_cast<unsigned char*>(dst);
    for (int64_t i = 0; i < count; ++i) {
      unsigned char* e = p + i * h.dtype.size;
      for (int a = 0, b = h.dtype.size - 1; a < b; ++a, --b) std::swap(e[a], e[b]);
    }
  }
}

void check_feature_matrix(const Header& h, const std::string& path) {
  if (h.dtype.kind != Kind::kFloat || (h.dtype.size != 4 && h.dtype.size != 8))
    fail(path, ": dtype ", in_quotes(h.dtype.descr), " (", h.dtype.name(),
         ") is not supported for features: expected float32 ('<f4') or float64 ('<f8')");
  if (h.shape.size() != 2)
    fail(path, ": expected a 2-D array (rows x features) but the shape is ",
         shape_text(h.shape));
}

std::ifstream open_for_read(const std::string& path) {
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, ": cannot open: ", std::strerror(errno));
  return in;
}

std::string make_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dict =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Pad with spaces so that magic + version + length + dict + '\n' is a multiple of 64.
  const size_t unpadded = kMagicLen + 2 + 2 + dict.size() + 1;
  dict.append((kAlign - unpadded % kAlign) % kAlign, ' ');
  dict += '\n';
  ZS_CHECK(dict.size() <= 65535, "npy header too long");
  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

template <typename T>
void write_le(std::ostream& out, const T* data, size_t count) {
  if (host_is_little_endian()) {
    out.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(count * sizeof(T)));
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &data[i], sizeof(T));
    for (size_t k = 0; k < sizeof(T); ++k) out.put(static_cast<char>(b[sizeof(T) - 1 - k]));
  }
}

}  // namespace

namespace detail {

float narrow_npy_feature(double v, const std::string& path, uint64_t element, int64_t cols) {
  const float f = static_cast<float>(v);
  if (std::isfinite(v) && !std::isfinite(f)) {
    const uint64_t c = cols > 0 ? static_cast<uint64_t>(cols) : 1;
    fail(path, ": row ", element / c, ", column ", element % c, " holds ", v,
         ", beyond float32's range (features are float32)");
  }
  return f;
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

std::string npy_shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

NpyHeader read_npy_header(std::istream& in, const std::string& path) { return read_header(in, path); }
int64_t check_npy_size(const NpyHeader& h, const std::string& path) { return check_size(h, path); }
void check_npy_feature_matrix(const NpyHeader& h, const std::string& path) {
  check_feature_matrix(h, path);
}
std::string npy_header_bytes(const std::string& descr, const std::vector<int64_t>& shape) {
  return make_header(descr, shape);
}

}  // namespace detail

HostMatrix read_npy_matrix(const std::string& path) {
  std::ifstream in = open_for_read(path);
  const Header h = read_header(in, path);
  check_feature_matrix(h, path);
  const int64_t count = check_size(h, path);
  HostMatrix m;
  m.rows = h.shape[0];
  m.cols = h.shape[1];
  m.data.resize(static_cast<size_t>(count));
  if (h.dtype.size == 4) {
    read_raw(in, h, m.data.data(), count, path);
  } else {
    std::vector<double> tmp(static_cast<size_t>(count));
    read_raw(in, h, tmp.data(), count, path);
    for (int64_t i = 0; i < count; ++i)
      m.data[i] = detail::narrow_npy_feature(tmp[i], path, static_cast<uint64_t>(i), m.cols);
  }
  return m;
}

std::vector<int64_t> read_npy_labels(const std::string& path) {
  std::ifstream in = open_for_read(path);
  const Header h = read_header(in, path);
  if (h.dtype.kind != Kind::kInt || (h.dtype.size != 4 && h.dtype.size != 8))
    fail(path, ": dtype ", in_quotes(h.dtype.descr), " (", h.dtype.name(),
         ") is not supported for labels: expected int32 ('<i4') or int64 ('<i8')");
  if (h.shape.size() != 1)
    fail(path, ": expected a 1-D array of labels but the shape is ", shape_text(h.shape));
  const int64_t count = check_size(h, path);
  std::vector<int64_t> labels(static_cast<size_t>(count));
  if (h.dtype.size == 8) {
    read_raw(in, h, labels.data(), count, path);
  } else {
    std::vector<int32_t> tmp(static_cast<size_t>(count));
    read_raw(in, h, tmp.data(), count, path);
    for (int64_t i = 0; i < count; ++i) labels[i] = tmp[i];
  }
  return labels;
}

void write_npy_matrix(const std::string& path, const HostMatrix& m) {
  if (m.rows < 0 || m.cols < 0 || static_cast<int64_t>(m.data.size()) != m.rows * m.cols)
    fail(path, ": cannot write a ", m.rows, " x ", m.cols, " matrix holding ", m.data.size(),
         " values");
  const std::string header = make_header("<f4", {m.rows, m.cols});
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    write_le(out, m.data.data(), m.data.size());
  });
}

void write_npy_labels(const std::string& path, const std::vector<int64_t>& labels) {
  const std::string header = make_header("<i8", {static_cast<int64_t>(labels.size())});
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    write_le(out, labels.data(), labels.size());
  });
}

}  // namespace zscrgan
