#include "train/pickle.h"

#include <limits>

namespace zscrgan {
namespace {

// Opcodes of pickle protocol 2 (Python's Lib/pickletools.py documents each).
constexpr char kProto = '\x80';
constexpr char kEmptyList = ']';
constexpr char kEmptyDict = '}';
constexpr char kMark = '(';
constexpr char kAppends = 'e';
constexpr char kSetItem = 's';
constexpr char kBinInt = 'J';   // 4-byte signed little-endian int
constexpr char kLong1 = '\x8a'; // 1-byte length, then a little-endian two's-complement int
constexpr char kStop = '.';

void put_int(std::string& out, int64_t v) {
  if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
    const uint32_t u = static_cast<uint32_t>(static_cast<int32_t>(v));
    out += kBinInt;
    for (int i = 0; i < 4; ++i) out += static_cast<char>((u >> (8 * i)) & 0xff);
    return;
  }
  // The shortest two's-complement form: drop high bytes that only repeat the sign.
  const uint64_t u = static_cast<uint64_t>(v);
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>((u >> (8 * i)) & 0xff);
  int n = 8;
  while (n > 1 && ((bytes[n - 1] == 0x00 && !(bytes[n - 2] & 0x80)) ||
                   (bytes[n - 1] == 0xff && (bytes[n - 2] & 0x80))))
    --n;
  out += kLong1;
  out += static_cast<char>(n);
  for (int i = 0; i < n; ++i) out += static_cast<char>(bytes[i]);
}

}  // namespace

std::string pickle_retrieval_record(const std::vector<QueryRetrieval>& record) {
  std::string out;
  out += kProto;
  out += '\x02';
  out += kEmptyList;
  out += kMark;
  for (const QueryRetrieval& q : record) {
    out += kEmptyDict;
    put_int(out, q.query_class);
    out += kEmptyList;
    if (!q.retrieved_classes.empty()) {
      out += kMark;
      for (int64_t c : q.retrieved_classes) put_int(out, c);
      out += kAppends;
    }
    out += kSetItem;
  }
  out += kAppends;
  out += kStop;
  return out;
}

}  // namespace zscrgan
