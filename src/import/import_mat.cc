#include "import_mat.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>

#include "core/error.h"

#ifdef ZSCRGAN_HAVE_MATIO
#include <matio.h>
#include <zlib.h>
#endif

namespace zscrgan {
namespace detail {

#ifdef ZSCRGAN_HAVE_MATIO

namespace {

// matio reports problems through a global logger that prints to stderr by default. We keep
// the last message instead, so that a failure is still the single line of our Error. matio
// reports some read failures (a compressed variable that ends early, a short read) only as
// warnings and returns a variable anyway, its missing values zero: so an error, a critical
// message or a warning logged while opening the file or reading a variable fails the import.
thread_local std::string g_last_matio_message;
thread_local bool g_matio_problem = false;

// A template, so that it converts to either callback type: matio 1.5.23 (Debian 12) passes
// `char*`, 1.5.28 (Debian 13) `const char*`.
template <typename Message>
void record_matio_message(int level, Message message) {
  g_last_matio_message = message ? message : "";
  if (level & (MATIO_LOG_LEVEL_ERROR | MATIO_LOG_LEVEL_CRITICAL | MATIO_LOG_LEVEL_WARNING))
    g_matio_problem = true;
}

void clear_matio_messages() {
  g_last_matio_message.clear();
  g_matio_problem = false;
}

void install_matio_logger() {
  static std::once_flag once;
  std::call_once(once, [] { Mat_LogInitFunc("zscrgan", record_matio_message); });
}

std::string matio_reason() {
  const std::string m = g_last_matio_message;
  clear_matio_messages();
  return m.empty() ? std::string() : " (matio: " + printable(m) + ")";
}

uint32_t load_u32(const unsigned char* p, bool little_endian) {
  return little_endian ? uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24
                       : uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24;
}

std::string nth_variable(size_t index, const std::vector<std::string>& names) {
  std::string s = "variable " + std::to_string(index + 1);
  if (index < names.size()) s += " (" + in_quotes(names[index]) + ")";
  return s;
}

// One top-level MAT v5 variable's bytes, read in order: the file's own bytes for a miMATRIX
// element, the inflated stream for a miCOMPRESSED one (fed from at most the element's stored
// bytes, so it ends where the file says the variable ends).
class VariableBytes {
 public:
  VariableBytes(std::FILE* f, uint64_t at, uint64_t length, bool compressed)
      : f_(f), at_(at), length_(length), compressed_(compressed) {
    if (compressed_ && inflateInit(&z_) != Z_OK) fail("internal: zlib inflateInit failed");
  }
  ~VariableBytes() {
    if (compressed_) inflateEnd(&z_);
  }
  VariableBytes(const VariableBytes&) = delete;
  VariableBytes& operator=(const VariableBytes&) = delete;

  // false when the variable's bytes end (or its compressed data is corrupt) first.
  bool read(unsigned char* out, size_t n) {
    if (!compressed_) {
      if (n > length_ - pos_) return false;
      if (std::fseek(f_, static_cast<long>(at_ + pos_), SEEK_SET) != 0 ||
          std::fread(out, 1, n, f_) != n)
        return false;
      pos_ += n;
      return true;
    }
    z_.next_out = out;
    z_.avail_out = static_cast<uInt>(n);
    while (z_.avail_out > 0) {
      if (z_.avail_in == 0 && fed_ < length_) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(sizeof in_, length_ - fed_));
        if (std::fseek(f_, static_cast<long>(at_ + fed_), SEEK_SET) != 0 ||
            std::fread(in_, 1, chunk, f_) != chunk)
          return false;
        fed_ += chunk;
        z_.next_in = in_;
        z_.avail_in = static_cast<uInt>(chunk);
      }
      const uInt before = z_.avail_out;
      const int rc = inflate(&z_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END && z_.avail_out > 0) return false;
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return false;
      if (z_.avail_out == before && z_.avail_in == 0 && fed_ >= length_) return false;
    }
    pos_ += n;
    return true;
  }
  bool skip(uint64_t n) {
    if (!compressed_) {
      if (n > length_ - pos_) return false;
      pos_ += n;
      return true;
    }
    while (n > 0) {  // inflated and dropped: the only way to learn the stream holds them
      const size_t step = static_cast<size_t>(std::min<uint64_t>(n, sizeof out_));
      if (!read(out_, step)) return false;
      n -= step;
    }
    return true;
  }
  uint64_t position() const { return pos_; }

 private:
  std::FILE* f_;
  uint64_t at_, length_, pos_ = 0, fed_ = 0;
  bool compressed_;
  z_stream z_{};
  unsigned char in_[1 << 16];
  unsigned char out_[1 << 16];
};

// The sizes nested inside one MAT v5 matrix element, held against the bytes the element has,
// before matio sees them: matio allocates what the array flags, dimensions, name, data parts
// and cell or struct contents declare (a cell's dimensions become one pointer per element, a
// numeric variable's dimensions one value each) before it reads a byte of them.
class MatrixChecker {
 public:
  MatrixChecker(const std::string& path, bool little_endian, VariableBytes& bytes, std::string label)
      : path_(path), le_(little_endian), bytes_(bytes), label_(std::move(label)) {}

  // The contents of a miMATRIX element of `nbytes` bytes.
  void matrix(uint64_t nbytes, int depth) {
    if (depth > kMaxDepth) bad("nests cells or structs deeper than " + std::to_string(kMaxDepth));
    if (nbytes == 0) return;  // an empty element (a cell's empty entry)
    uint64_t left = nbytes;
    Tag flags = tag(left, "array flags");
    if (flags.type != 6 /* miUINT32 */ || flags.nbytes != 8) bad("has malformed array flags");
    unsigned char fw[8];
    data(left, flags, fw, "array flags");
    const uint32_t word = load_u32(fw, le_);
    const int cls = static_cast<int>(word & 0xff);
    const bool complex = (word & 0x800) != 0;

    Tag dtag = tag(left, "dimensions");
    if (dtag.type != 5 /* miINT32 */ || dtag.nbytes % 4 != 0 || dtag.nbytes < 8)
      bad("has malformed dimensions");
    std::vector<unsigned char> draw(dtag.nbytes);  // bounded by the element's bytes
    data(left, dtag, draw.data(), "dimensions");

    Tag ntag = tag(left, "name");
    if (ntag.type != 1 /* miINT8 */ && ntag.type != 16 /* miUTF8 */) bad("has a malformed name");
    std::string name(ntag.nbytes, '\0');  // bounded by the element's bytes
    data(left, ntag, reinterpret_cast<unsigned char*>(name.data()), "name");
    if (depth == 0 && !name.empty()) label_ = "variable " + in_quotes(name);

    uint64_t nelems = 1;
    std::string dims;
    bool overflow = false;
    for (uint32_t i = 0; i < dtag.nbytes / 4; ++i) {
      const uint64_t d = load_u32(&draw[4 * i], le_);
      if (i < 8) dims += (i ? " x " : "") + std::to_string(d);
      if (i == 8) dims += " x ... (" + std::to_string(dtag.nbytes / 4) + " dimensions)";
      overflow = overflow || __builtin_mul_overflow(nelems, d, &nelems);
    }
    if (overflow) bad("declares dimensions " + dims + " whose product overflows");

    auto part = [&](const char* what, bool check_count) {
      if (left == 0 && (nelems == 0 || !check_count)) return;  // an empty matrix may stop here
      Tag p = tag(left, what);
      const uint64_t size = storage_size(p.type);
      if (size == 0) bad(std::string("has a ") + what + " of unknown data type " + std::to_string(p.type));
      uint64_t need = 0;
      if (check_count && (__builtin_mul_overflow(nelems, size, &need) || need > p.nbytes))
        bad("declares dimensions " + dims + " (" + std::to_string(nelems) + " values) but its " +
            what + " holds " + std::to_string(p.nbytes / size));
      skip_data(left, p, what);
    };
    switch (cls) {
      case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: case 14: case 15:
      case 4:  // numeric classes and char
        part("real part", true);
        if (complex) part("imaginary part", true);
        break;
      case 5:  // sparse: row indices, column starts, values (matio sizes each by its tag)
        part("row indices", false);
        part("column starts", false);
        part("real part", false);
        if (complex) part("imaginary part", false);
        break;
      case 1:  // cell: one matrix element per entry, each at least a tag
        entries(left, nelems, depth, "cell entries");
        break;
      case 3:  // object: a class name, then the fields of a struct
      case 2: {  // struct: a field name length, the field names, then each field of each entry
        if (cls == 3) {
          Tag c = tag(left, "class name");
          skip_data(left, c, "class name");
        }
        Tag ltag = tag(left, "field name length");
        unsigned char lraw[4] = {0, 0, 0, 0};
        if (ltag.type != 5 || ltag.nbytes != 4) bad("has a malformed field name length");
        data(left, ltag, lraw, "field name length");
        const uint64_t field_len = load_u32(lraw, le_);
        Tag ftag = tag(left, "field names");
        if (field_len == 0 && ftag.nbytes != 0) bad("has a field name length of 0");
        const uint64_t nfields = field_len ? ftag.nbytes / field_len : 0;
        skip_data(left, ftag, "field names");
        uint64_t n = 0;
        if (__builtin_mul_overflow(nelems, nfields, &n))
          bad("declares dimensions " + dims + " and " + std::to_string(nfields) + " fields that overflow");
        entries(left, n, depth, "struct fields");
        break;
      }
      default:
        break;  // function handles, opaque objects: matio reads no sizes from them
    }
    if (!bytes_.skip(left)) ended("padding", left);
  }

 private:
  static constexpr int kMaxDepth = 64;
  struct Tag {
    uint32_t type = 0;
    uint32_t nbytes = 0;
    bool small = false;
    unsigned char inline_data[4] = {0, 0, 0, 0};
  };

  static uint64_t storage_size(uint32_t type) {
    switch (type) {
      case 1: case 2: case 16: return 1;        // miINT8, miUINT8, miUTF8
      case 3: case 4: case 17: return 2;        // miINT16, miUINT16, miUTF16
      case 5: case 6: case 7: case 18: return 4;  // miINT32, miUINT32, miSINGLE, miUTF32
      case 9: case 12: case 13: return 8;       // miDOUBLE, miINT64, miUINT64
      default: return 0;
    }
  }

  [[noreturn]] void bad(const std::string& what) {
    fail(path_, ": ", label_, " is corrupt: it ", what, " (at byte ", bytes_.position(),
         " of the variable)");
  }
  [[noreturn]] void ended(const char* what, uint64_t declared) {
    fail(path_, ": ", label_, " is truncated or corrupt: its ", what, " declares ", declared,
         " bytes but the variable ends first (at byte ", bytes_.position(), " of the variable)");
  }

  Tag tag(uint64_t& left, const char* what) {
    unsigned char raw[8];
    if (left < 8 || !bytes_.read(raw, 8)) ended(what, 8);
    left -= 8;
    Tag t;
    t.type = load_u32(raw, le_);
    if (t.type >> 16) {  // a small data element: its 1-4 bytes inside the tag
      t.small = true;
      t.nbytes = t.type >> 16;
      t.type &= 0xffff;
      if (t.nbytes > 4) bad(std::string("has a malformed ") + what);
      std::memcpy(t.inline_data, raw + 4, 4);
    } else {
      t.nbytes = load_u32(raw + 4, le_);
      if (t.nbytes > left) ended(what, t.nbytes);
    }
    return t;
  }
  static uint64_t padded(uint64_t n) { return (n + 7) / 8 * 8; }
  void data(uint64_t& left, const Tag& t, unsigned char* out, const char* what) {
    if (t.small) {
      std::memcpy(out, t.inline_data, std::min<uint32_t>(t.nbytes, 4));
      return;
    }
    if (!bytes_.read(out, t.nbytes)) ended(what, t.nbytes);
    left -= t.nbytes;
    pad(left);
  }
  void skip_data(uint64_t& left, const Tag& t, const char* what) {
    if (t.small) return;
    if (!bytes_.skip(t.nbytes)) ended(what, t.nbytes);
    left -= t.nbytes;
    pad(left);
  }
  void pad(uint64_t& left) {
    const uint64_t used = (8 - bytes_.position() % 8) % 8;  // sub-elements are 8-byte aligned
    const uint64_t n = std::min(left, used);
    if (!bytes_.skip(n)) ended("padding", n);
    left -= n;
  }
  void entries(uint64_t& left, uint64_t n, int depth, const char* what) {
    uint64_t need = 0;
    if (__builtin_mul_overflow(n, uint64_t{8}, &need) || need > left)
      bad("declares " + std::to_string(n) + " " + what + " but holds only " + std::to_string(left) +
          " bytes (8 at least for each)");
    for (uint64_t i = 0; i < n; ++i) {
      Tag t = tag(left, what);
      if (t.small || t.type != 14 /* miMATRIX */) bad(std::string("has ") + what + " that are not matrices");
      const uint64_t before = bytes_.position();
      matrix(t.nbytes, depth + 1);
      left -= bytes_.position() - before;
    }
  }

  const std::string& path_;
  bool le_;
  VariableBytes& bytes_;
  std::string label_;
};

// The sizes the file declares, held against its length: every top-level data element of a
// MAT v5 file (an 8-byte tag: type, byte count) and every matrix of a v4 file (a 20-byte
// header: type, rows, columns, imaginary flag, name length) must end inside the file. matio
// reads a variable that is cut short without a word, its missing values left as they were.
void check_declared_sizes(const std::string& path, int version,
                          const std::vector<std::string>& names) {
  // Only the tags are read, a few bytes each, however large the variables.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail(path, ": cannot open: ", std::strerror(errno));
  if (std::fseek(f.get(), 0, SEEK_END) != 0) fail(path, ": cannot determine the file size");
  const long end = std::ftell(f.get());
  if (end < 0) fail(path, ": cannot determine the file size");
  const uint64_t size = static_cast<uint64_t>(end);
  auto read_at = [&](uint64_t at, unsigned char* out, size_t n) {
    if (std::fseek(f.get(), static_cast<long>(at), SEEK_SET) != 0 ||
        std::fread(out, 1, n, f.get()) != n)
      fail(path, ": read error at byte ", at);
  };
  auto cut_short = [&](size_t index, uint64_t at, uint64_t declared) {
    fail(path, ": truncated: ", nth_variable(index, names), " at byte ", at, " declares ",
         declared, " bytes but the file ends ", size - std::min(size, at), " bytes after its start");
  };
  if (version == MAT_FT_MAT5) {
    if (size < 128) fail(path, ": truncated: ", size, " bytes, shorter than a MAT v5 header");
    unsigned char head[128];
    read_at(0, head, 128);
    const bool le = head[126] == 'I' && head[127] == 'M';
    uint64_t at = 128;
    for (size_t index = 0; at < size; ++index) {
      if (size - at < 8) {
        // Writers may pad the end with zeros; anything else is a cut tag.
        unsigned char rest[8];
        read_at(at, rest, size - at);
        for (uint64_t i = 0; i < size - at; ++i)
          if (rest[i] != 0) cut_short(index, at, 8);
        break;
      }
      unsigned char tag[8];
      read_at(at, tag, 8);
      const uint32_t type = load_u32(tag, le);
      if (type >> 16) {  // a "small data element": its 1-4 bytes live inside the tag
        at += 8;
        continue;
      }
      const uint64_t declared = 8 + uint64_t{load_u32(tag + 4, le)};
      if (declared > size - at) cut_short(index, at, declared);
      if (type == 14 /* miMATRIX */ || type == 15 /* miCOMPRESSED */) {
        VariableBytes bytes(f.get(), at + 8, declared - 8, type == 15);
        MatrixChecker check(path, le, bytes, nth_variable(index, names));
        if (type == 14) {
          check.matrix(declared - 8, 0);
        } else {
          unsigned char inner[8];  // the compressed stream holds one miMATRIX element
          if (!bytes.read(inner, 8))
            fail(path, ": ", nth_variable(index, names),
                 " is truncated or corrupt: its compressed data ends before its first tag");
          if (load_u32(inner, le) == 14) check.matrix(load_u32(inner + 4, le), 0);
        }
      }
      at += declared;
      if (type != 15 /* miCOMPRESSED */) at = (at + 7) / 8 * 8;  // 8-byte aligned
    }
  } else if (version == MAT_FT_MAT4) {
    uint64_t at = 0;
    for (size_t index = 0; at < size; ++index) {
      if (size - at < 20) cut_short(index, at, 20);
      unsigned char h[20];
      read_at(at, h, 20);
      uint32_t type = load_u32(h, true);
      bool le = true;
      if (type > 4052) {
        type = load_u32(h, false);
        le = false;
      }
      const uint64_t rows = load_u32(h + 4, le), cols = load_u32(h + 8, le);
      const uint64_t imaginary = load_u32(h + 12, le), name_len = load_u32(h + 16, le);
      static const uint64_t kElementBytes[] = {8, 4, 4, 2, 2, 1};
      const uint64_t precision = (type / 10) % 10;
      const uint64_t element = precision < 6 ? kElementBytes[precision] : 8;
      uint64_t declared = 0;
      if (__builtin_mul_overflow(rows, cols, &declared) ||
          __builtin_mul_overflow(declared, element * (imaginary ? 2 : 1), &declared) ||
          __builtin_add_overflow(declared, 20 + name_len, &declared) || declared > size - at)
        cut_short(index, at, declared);
      at += declared;
    }
  }
  // v7.3 files are HDF5: the HDF5 library checks the file's extent itself.
}

// Whether the file opens like a MAT v4 file: no v5 or v7.3 header, and a first matrix header
// whose type is a valid MOPT number in either byte order. matio's Mat_Open reads that first
// header, and allocates the name length it declares, so these sizes are checked before it.
bool looks_like_mat4(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return false;
  unsigned char head[128];
  const size_t n = std::fread(head, 1, sizeof head, f.get());
  if (n == sizeof head && ((head[126] == 'I' && head[127] == 'M') || (head[126] == 'M' && head[127] == 'I')))
    return false;  // v5 or v7.3
  if (n < 20) return false;
  for (bool le : {true, false}) {
    const uint32_t type = load_u32(head, le);
    if (type <= 4052 && (type / 100) % 10 == 0 && (type / 10) % 10 <= 5 && type % 10 <= 2) return true;
  }
  return false;
}

const char* class_name_of(int class_type) {
  switch (class_type) {
    case MAT_C_EMPTY: return "empty";
    case MAT_C_CELL: return "cell array";
    case MAT_C_STRUCT: return "struct";
    case MAT_C_OBJECT: return "object";
    case MAT_C_CHAR: return "char array";
    case MAT_C_SPARSE: return "sparse";
    case MAT_C_DOUBLE: return "double";
    case MAT_C_SINGLE: return "single";
    case MAT_C_INT8: return "int8";
    case MAT_C_UINT8: return "uint8";
    case MAT_C_INT16: return "int16";
    case MAT_C_UINT16: return "uint16";
    case MAT_C_INT32: return "int32";
    case MAT_C_UINT32: return "uint32";
    case MAT_C_INT64: return "int64";
    case MAT_C_UINT64: return "uint64";
    case MAT_C_FUNCTION: return "function handle";
    case MAT_C_OPAQUE: return "opaque object";
  }
  return "unknown class";
}

struct MatVarFree {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};

}  // namespace

struct MatVarData {
  std::unique_ptr<matvar_t, MatVarFree> var;
  int class_type = MAT_C_DOUBLE;  // of the values `values()` points at
  std::vector<double> dense;      // a sparse variable, densified (column-major)
  const void* values() const { return dense.empty() ? var->data : dense.data(); }
};

namespace {

// Calls fn(const T* column_major_values) with T the variable's element type.
template <typename Fn>
void visit(const MatVarData& d, Fn&& fn) {
  const void* p = d.values();
  switch (d.class_type) {
    case MAT_C_DOUBLE: fn(static_cast<const double*>(p)); return;
    case MAT_C_SINGLE: fn(static_cast<const float*>(p)); return;
    case MAT_C_INT8: fn(static_cast<const int8_t*>(p)); return;
    case MAT_C_UINT8: fn(static_cast<const uint8_t*>(p)); return;
    case MAT_C_INT16: fn(static_cast<const int16_t*>(p)); return;
    case MAT_C_UINT16: fn(static_cast<const uint16_t*>(p)); return;
    case MAT_C_INT32: fn(static_cast<const int32_t*>(p)); return;
    case MAT_C_UINT32: fn(static_cast<const uint32_t*>(p)); return;
    case MAT_C_INT64: fn(static_cast<const int64_t*>(p)); return;
    case MAT_C_UINT64: fn(static_cast<const uint64_t*>(p)); return;
    default: break;
  }
  fail("internal: unexpected matio class ", d.class_type);
}

// The element type stored for a sparse variable's values (matio keeps the on-disk data type).
template <typename Fn>
bool visit_data_type(int data_type, const void* p, Fn&& fn) {
  switch (data_type) {
    case MAT_T_DOUBLE: fn(static_cast<const double*>(p)); return true;
    case MAT_T_SINGLE: fn(static_cast<const float*>(p)); return true;
    case MAT_T_INT8: fn(static_cast<const int8_t*>(p)); return true;
    case MAT_T_UINT8: fn(static_cast<const uint8_t*>(p)); return true;
    case MAT_T_INT16: fn(static_cast<const int16_t*>(p)); return true;
    case MAT_T_UINT16: fn(static_cast<const uint16_t*>(p)); return true;
    case MAT_T_INT32: fn(static_cast<const int32_t*>(p)); return true;
    case MAT_T_UINT32: fn(static_cast<const uint32_t*>(p)); return true;
    case MAT_T_INT64: fn(static_cast<const int64_t*>(p)); return true;
    case MAT_T_UINT64: fn(static_cast<const uint64_t*>(p)); return true;
    default: return false;
  }
}

[[noreturn]] void fail_non_finite(const MatMatrix& m, int64_t r, int64_t c, double v) {
  fail(m.file(), ": variable '", m.name(), "' has a non-finite value (", v, ") at row ", r + 1,
       ", column ", c + 1, " (1-based)");
}

}  // namespace

MatMatrix::MatMatrix(std::string file, std::string name, std::unique_ptr<MatVarData> data)
    : file_(std::move(file)), name_(std::move(name)), data_(std::move(data)) {
  const matvar_t* v = data_->var.get();
  rows_ = v->rank >= 1 ? static_cast<int64_t>(v->dims[0]) : 0;
  cols_ = v->rank >= 2 ? static_cast<int64_t>(v->dims[1]) : 1;
}
MatMatrix::MatMatrix(MatMatrix&&) noexcept = default;
MatMatrix& MatMatrix::operator=(MatMatrix&&) noexcept = default;
MatMatrix::~MatMatrix() = default;

std::string MatMatrix::shape() const {
  std::ostringstream os;
  os << rows_ << " x " << cols_;
  return os.str();
}

std::string MatMatrix::class_name() const {
  if (data_->var->class_type == MAT_C_SPARSE) return "sparse";
  if (data_->var->isLogical) return "logical";
  return class_name_of(data_->class_type);
}

std::vector<int64_t> MatMatrix::integer_vector() const {
  if (rows_ != 1 && cols_ != 1 && rows_ * cols_ != 0)
    fail(file_, ": variable '", name_, "' is ", shape(), "; expected a vector (n x 1 or 1 x n)");
  const int64_t n = rows_ * cols_;
  std::vector<int64_t> out(static_cast<size_t>(n));
  visit(*data_, [&](const auto* p) {
    for (int64_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(p[i]);
      // 2^63 is exactly representable; anything at or beyond it does not fit an int64.
      if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) >= 9.2233720368547758e18)
        fail(file_, ": variable '", name_, "' entry ", i + 1, " (1-based) is ", v,
             ", not an integer");
      out[i] = static_cast<int64_t>(p[i]);
    }
  });
  return out;
}

HostMatrix MatMatrix::columns_as_rows(const std::vector<int64_t>& cols) const {
  HostMatrix out;
  out.rows = static_cast<int64_t>(cols.size());
  out.cols = rows_;
  out.data.resize(static_cast<size_t>(out.rows * out.cols));
  visit(*data_, [&](const auto* p) {
    for (int64_t k = 0; k < out.rows; ++k) {
      const int64_t c = cols[k];
      ZS_CHECK(c >= 0 && c < cols_, "column ", c, " of ", cols_);
      const auto* src = p + c * rows_;
      float* dst = out.row(k);
      for (int64_t r = 0; r < rows_; ++r) dst[r] = static_cast<float>(src[r]);
      for (int64_t r = 0; r < rows_; ++r)
        if (!std::isfinite(dst[r])) fail_non_finite(*this, r, c, static_cast<double>(src[r]));
    }
  });
  return out;
}

HostMatrix MatMatrix::rows_as_rows(const std::vector<int64_t>& rows) const {
  HostMatrix out;
  out.rows = static_cast<int64_t>(rows.size());
  out.cols = cols_;
  out.data.resize(static_cast<size_t>(out.rows * out.cols));
  for (int64_t r : rows) ZS_CHECK(r >= 0 && r < rows_, "row ", r, " of ", rows_);
  visit(*data_, [&](const auto* p) {
    // A transpose: take a band of columns at a time so the reads of each band stay in cache.
    constexpr int64_t kBand = 16;
    for (int64_t c0 = 0; c0 < cols_; c0 += kBand) {
      const int64_t c1 = std::min(cols_, c0 + kBand);
      for (int64_t k = 0; k < out.rows; ++k) {
        float* dst = out.row(k);
        for (int64_t c = c0; c < c1; ++c) dst[c] = static_cast<float>(p[c * rows_ + rows[k]]);
      }
    }
    for (int64_t k = 0; k < out.rows; ++k) {
      const float* row = out.row(k);
      for (int64_t c = 0; c < cols_; ++c)
        if (!std::isfinite(row[c]))
          fail_non_finite(*this, rows[k], c, static_cast<double>(p[c * rows_ + rows[k]]));
    }
  });
  return out;
}

HostMatrix MatMatrix::all_rows() const {
  std::vector<int64_t> rows(static_cast<size_t>(rows_));
  for (int64_t r = 0; r < rows_; ++r) rows[r] = r;
  return rows_as_rows(rows);
}

MatFile::MatFile(const std::string& path) : path_(path) {
  install_matio_logger();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail_file(path, ": not found");
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a folder, expected a .mat file");
  // A v4 file's first matrix header is read (its name allocated) by Mat_Open itself.
  if (looks_like_mat4(path)) check_declared_sizes(path, MAT_FT_MAT4, {});
  clear_matio_messages();
  mat_t* mat = Mat_Open(path.c_str(), MAT_ACC_RDONLY);
  if (!mat) fail(path, ": cannot open as a MAT file (v4, v5 or v7.3)", matio_reason());
  mat_ = mat;
  try {
    list_variables();
  } catch (...) {
    Mat_Close(mat);  // the destructor does not run for a constructor that throws
    mat_ = nullptr;
    throw;
  }
}

void MatFile::list_variables() {
  const std::string& path = path_;
  mat_t* mat = static_cast<mat_t*>(mat_);
  // The sizes first, before matio walks the file (and allocates what each variable declares).
  check_declared_sizes(path, Mat_GetVersion(mat), {});
  size_t n = 0;
  // Owned by `mat`, freed by Mat_Close; `char**` in matio 1.5.23, `char* const*` in 1.5.28.
  const auto dir = Mat_GetDir(mat, &n);
  for (size_t i = 0; dir && i < n; ++i)
    if (dir[i]) names_.insert(dir[i]);
  const bool listing_problem = g_matio_problem;
  const std::string reason = matio_reason();
  if (listing_problem)
    fail(path, ": cannot list the variables (the file may be truncated or corrupt)", reason);
}

MatFile::~MatFile() {
  if (mat_) Mat_Close(static_cast<mat_t*>(mat_));
}

std::string MatFile::listing() const {
  // The names come from the file: each escaped and cut, and at most 20 of them.
  std::string out;
  size_t shown = 0;
  for (const auto& n : names_) {
    if (shown == 20) {
      out += ", ... (" + std::to_string(names_.size()) + " in all)";
      break;
    }
    out += (out.empty() ? "" : ", ") + printable(n, 64);
    ++shown;
  }
  return out.empty() ? "none" : out;
}

MatMatrix MatFile::read(const std::string& name) const {
  if (!has(name))
    fail(path_, ": variable '", name, "' not found (the file holds: ", listing(), ")");
  clear_matio_messages();
  auto data = std::make_unique<MatVarData>();
  data->var.reset(Mat_VarRead(static_cast<mat_t*>(mat_), name.c_str()));
  matvar_t* v = data->var.get();
  if (!v) fail(path_, ": cannot read variable ", in_quotes(name), matio_reason());
  if (g_matio_problem)
    fail(path_, ": variable ", in_quotes(name),
         " was not read completely (the file may be truncated or corrupt)", matio_reason());
  data->class_type = v->class_type;

  if (v->isComplex) fail(path_, ": variable '", name, "' is complex; expected a real matrix");
  if (v->rank < 1 || v->rank > 2) {
    for (int i = 2; i < v->rank; ++i) {
      if (v->dims[i] != 1) {
        std::ostringstream dims;
        for (int j = 0; j < v->rank; ++j) dims << (j ? " x " : "") << v->dims[j];
        fail(path_, ": variable '", name, "' is ", dims.str(), "; expected a 2-D matrix");
      }
    }
  }
  const size_t rows = v->rank >= 1 ? v->dims[0] : 0;
  const size_t cols = v->rank >= 2 ? v->dims[1] : 1;

  if (v->class_type == MAT_C_SPARSE) {
    const auto* s = static_cast<const mat_sparse_t*>(v->data);
    if (!s) fail(path_, ": variable '", name, "' is sparse but holds no data", matio_reason());
    data->dense.assign(rows * cols, 0.0);
    // Compressed sparse columns: values jc[c] .. jc[c+1]-1 belong to column c, at rows ir[k].
    if (s->njc != cols + 1 || s->nir < s->ndata)
      fail(path_, ": variable '", name, "' is a malformed sparse matrix");
    const bool ok = visit_data_type(v->data_type, s->data, [&](const auto* vals) {
      for (size_t c = 0; c < cols; ++c) {
        for (size_t k = s->jc[c]; k < s->jc[c + 1] && k < s->ndata; ++k) {
          if (s->ir[k] >= rows) fail(path_, ": variable '", name, "' is a malformed sparse matrix");
          data->dense[c * rows + s->ir[k]] = static_cast<double>(vals[k]);
        }
      }
    });
    if (!ok) fail(path_, ": variable '", name, "' is sparse of an unsupported element type");
    data->class_type = MAT_C_DOUBLE;
    if (data->dense.empty()) data->dense.push_back(0.0);  // keep values() off the matvar
  } else {
    switch (v->class_type) {
      case MAT_C_DOUBLE: case MAT_C_SINGLE: case MAT_C_INT8: case MAT_C_UINT8:
      case MAT_C_INT16: case MAT_C_UINT16: case MAT_C_INT32: case MAT_C_UINT32:
      case MAT_C_INT64: case MAT_C_UINT64:
        break;
      case MAT_C_EMPTY:
        data->class_type = MAT_C_DOUBLE;  // 0 x 0: nothing is ever read
        break;
      default:
        fail(path_, ": variable '", name, "' is a ", class_name_of(v->class_type),
             "; expected a numeric matrix");
    }
    if (rows * cols > 0 && !v->data)
      fail(path_, ": cannot read the data of variable '", name, "'", matio_reason());
  }
  return MatMatrix(path_, name, std::move(data));
}

#else  // !ZSCRGAN_HAVE_MATIO

struct MatVarData {};

MatMatrix::MatMatrix(std::string file, std::string name, std::unique_ptr<MatVarData> data)
    : file_(std::move(file)), name_(std::move(name)), data_(std::move(data)) {}
MatMatrix::MatMatrix(MatMatrix&&) noexcept = default;
MatMatrix& MatMatrix::operator=(MatMatrix&&) noexcept = default;
MatMatrix::~MatMatrix() = default;
std::string MatMatrix::shape() const { return ""; }
std::string MatMatrix::class_name() const { return ""; }
std::vector<int64_t> MatMatrix::integer_vector() const { return {}; }
HostMatrix MatMatrix::columns_as_rows(const std::vector<int64_t>&) const { return {}; }
HostMatrix MatMatrix::rows_as_rows(const std::vector<int64_t>&) const { return {}; }
HostMatrix MatMatrix::all_rows() const { return {}; }

MatFile::MatFile(const std::string& path) : path_(path) {
  fail(path, ": cannot read .mat files: this build has no matio (install libmatio-dev and "
             "reconfigure)");
}
MatFile::~MatFile() = default;
std::string MatFile::listing() const { return ""; }
MatMatrix MatFile::read(const std::string& name) const {
  fail(path_, ": cannot read variable '", name, "': this build has no matio");
}

#endif  // ZSCRGAN_HAVE_MATIO

}  // namespace detail
}  // namespace zscrgan
