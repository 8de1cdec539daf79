// The steady-state training step allocates nothing: every malloc-family call of the process
// (C++ operator new, OpenMP, our code) is counted while E-step iterations and CSEM steps run
// after a warm-up round. A separate program because it replaces malloc.
//
// One exception is measured and reported, not counted: oneDNN 2.6's primitive execution
// allocates its own bookkeeping (the execution context's argument map) inside each call,
// whatever the caller passes; its primitives, memory objects and scratchpads are ours and are
// made before the steady state. oneDNN's allocations are told apart by their caller's shared
// object.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
std::atomic<long> onednn_internal{0};
thread_local bool inside = false;

bool in_onednn(void* address) {
  Dl_info info;
  return dladdr(address, &info) != 0 && info.dli_fname != nullptr &&
         std::strstr(info.dli_fname, "libdnnl") != nullptr;
}

// True when one of the innermost frames above the allocation is oneDNN's (it allocates
// through operator new, so the immediate caller is libstdc++).
bool called_from_onednn() {
  void* frames[12];
  const int n = backtrace(frames, 12);
  for (int i = 1; i < n; ++i)
    if (in_onednn(frames[i])) return true;
  return false;
}

void note() {
  if (!counting.load(std::memory_order_relaxed) || inside) return;
  inside = true;
  if (called_from_onednn()) {
    onednn_internal.fetch_add(1, std::memory_order_relaxed);
  } else {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (std::getenv("ZS_TRAP_ALLOC")) __builtin_trap();  // run under gdb to see where
  }
  inside = false;
}
}  // namespace

#define NOTE() note()
extern "C" {
void* malloc(size_t n) { NOTE(); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { NOTE(); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { NOTE(); return __libc_realloc(p, n); }
void* memalign(size_t a, size_t n) { NOTE(); return __libc_memalign(a, n); }
void* aligned_alloc(size_t a, size_t n) { NOTE(); return __libc_memalign(a, n); }
int posix_memalign(void** p, size_t a, size_t n) {
  NOTE();
  *p = __libc_memalign(a, n);
  return *p ? 0 : 12;
}
void free(void* p) { __libc_free(p); }
}

namespace zscrgan {
namespace {

Dataset small_dataset(int image_dim) {
  SyntheticSpec spec;
  spec.seen_classes = 8;
  spec.unseen_classes = 4;
  spec.images_per_class = 6;
  spec.texts_per_class = 1;
  spec.text_dim = 10;
  spec.image_dim = image_dim;
  return make_synthetic_dataset(spec);
}

void expect_steady_state_steps_allocate_nothing(int gf_dim, int image_dim, int embed_dim) {
  Config cfg;
  cfg.batch_size = 8;
  cfg.gf_dim = gf_dim;
  cfg.df_dim = 16;
  cfg.embed_dim = embed_dim;
  cfg.z_dim = 4;
  cfg.e_step_iters = 6;
  cfg.m_step_iters = 12;
  cfg.top_k = 5;
  const Dataset d = small_dataset(image_dim);
  auto be = make_cpu_backend();
  Trainer t(cfg, d, *be);
  t.train_round();  // warm-up: the arena settles at its high-water size
  TrainerSteps steps(t);
  const int64_t backend_allocs = steps.arena().backend_allocations();

  void* warm[4];
  backtrace(warm, 4);  // loads the unwinder now, not while counting
  counting = true;
  steps.begin_round();
  for (int i = 0; i < cfg.e_step_iters; ++i) steps.e_iteration();
  for (int s = 0; s < cfg.m_step_iters; s += steps.csem_chunk_steps())
    steps.csem_chunk(s, std::min(steps.csem_chunk_steps(), cfg.m_step_iters - s));
  counting = false;

  EXPECT_EQ(allocations.load(), 0) << "heap allocations inside steady-state steps";
  std::printf("steady-state round: %ld allocations by our code; %ld inside oneDNN's primitive execution\n",
              allocations.load(), onednn_internal.load());
  EXPECT_EQ(steps.arena().backend_allocations(), backend_allocs) << "arena grew in steady state";
  steps.finish_round();
}

TEST(SteadyState, TrainingStepsAllocateNothing) { expect_steady_state_steps_allocate_nothing(32, 24, 8); }

// Weights large enough for the CPU backend's blocked weight-gradient updates, whose buffer of
// packed factors is made in the warm-up round: the second generator layer (1024 x 2048,
// RMSProp) and CSEM (1024 x 1024, Adam).
TEST(SteadyState, BlockedWeightGradientUpdatesAllocateNothing) {
  static_assert(size_t(1024) * 2048 >= kCpuBlockedUpdateMinParams &&
                    size_t(1024) * 1024 >= kCpuBlockedUpdateMinParams,
                "both weights take the blocked path");
  expect_steady_state_steps_allocate_nothing(1024, 1024, 1024);
}

}  // namespace
}  // namespace zscrgan
