// The step arena: growth while warming up, one chunk in steady state, and ensure_free, which a
// captured step relies on to allocate nothing while it is recorded.
#include <gtest/gtest.h>

#include "backend/arena.h"
#include "backend/cpu/cpu_backend.h"

namespace zscrgan {
namespace {

TEST(Arena, GrowsWhileWarmingUpThenSettlesInOneChunk) {
  auto be = make_cpu_backend();
  Arena a(*be, 1 << 20);
  EXPECT_EQ(a.backend_allocations(), 1);
  for (int i = 0; i < 4; ++i) a.alloc(512, 1024);  // 8 MiB: more than the first chunk
  const int64_t grown = a.backend_allocations();
  EXPECT_GT(grown, 1);
  a.reset();  // replaced by one chunk of the high-water size
  const int64_t settled = a.backend_allocations();
  for (int step = 0; step < 5; ++step) {
    for (int i = 0; i < 4; ++i) a.alloc(512, 1024);
    a.reset();
  }
  EXPECT_EQ(a.backend_allocations(), settled);
  EXPECT_EQ(a.generation(), settled);
}

TEST(Arena, EnsureFreeMakesTheNextAllocationsFitWithoutAllocating) {
  auto be = make_cpu_backend();
  Arena a(*be, 1 << 20);
  a.alloc(200, 1024);  // 800 KiB of the 1 MiB chunk used
  a.ensure_free(4 << 20);
  const int64_t before = a.backend_allocations();
  EXPECT_GT(before, 1);
  a.alloc(1024, 1024);  // 4 MiB
  EXPECT_EQ(a.backend_allocations(), before);
  a.ensure_free(1024);  // already enough room: nothing new
  EXPECT_EQ(a.backend_allocations(), before);
}

}  // namespace
}  // namespace zscrgan
