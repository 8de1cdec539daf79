// The 64-bit hash the project records to recognise content it has seen before (a checkpoint's
// tensors and metadata, the data a run was trained on): fast and order-sensitive, not
// cryptographic. Its value is part of the checkpoint format: changing the mix changes every
// recorded hash.
#ifndef ZSCRGAN_CONTENT_HASH_H
#define ZSCRGAN_CONTENT_HASH_H

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace zscrgan {

class ContentHash {
 public:
  void add(uint64_t word) {
    h_ ^= word;
    h_ *= 0xFF51AFD7ED558CCDull;
    h_ ^= h_ >> 32;
  }
  // The bytes as little-endian words, then the tail bytes one at a time, then the length (so
  // that where one run of bytes ends and the next begins is part of the hash).
  void add_bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      add(w);
    }
    for (; i < n; ++i) add(p[i]);
    add(n);
  }
  std::string hex() const {  // 16 lowercase hex digits
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0x9E3779B97F4A7C15ull;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_CONTENT_HASH_H
