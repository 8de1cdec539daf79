// splitmix64 (Steele, Lea and Flood, 2014): a 64-bit mix whose outputs for consecutive inputs
// look independent. Used to derive seeds and keys, never as a generator of its own.
#ifndef ZSCRGAN_SPLITMIX64_H
#define ZSCRGAN_SPLITMIX64_H

#include <cstdint>

namespace zscrgan {

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace zscrgan

#endif  // ZSCRGAN_SPLITMIX64_H
