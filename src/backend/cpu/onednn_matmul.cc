#include "onednn_matmul.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "core/error.h"

namespace zscrgan {
namespace {

struct Key {
  bool ta, tb;
  int m, n, k;
  int64_t lda, ldb, ldc;
  float alpha, beta;
  bool bias;
  Act act;
  int threads;
  bool operator==(const Key& o) const {
    return ta == o.ta && tb == o.tb && m == o.m && n == o.n && k == o.k && lda == o.lda &&
           ldb == o.ldb && ldc == o.ldc && std::memcmp(&alpha, &o.alpha, sizeof alpha) == 0 &&
           std::memcmp(&beta, &o.beta, sizeof beta) == 0 && bias == o.bias && act == o.act &&
           threads == o.threads;
  }
  bool operator<(const Key& o) const {
    return std::tie(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, bias, act, threads) <
           std::tie(o.ta, o.tb, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.alpha, o.beta, o.bias, o.act, o.threads);
  }
};

struct KeyHash {
  size_t operator()(const Key& key) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    uint32_t a, b;
    std::memcpy(&a, &key.alpha, sizeof a);
    std::memcpy(&b, &key.beta, sizeof b);
    mix(key.ta);
    mix(key.tb);
    mix(static_cast<uint64_t>(key.m));
    mix(static_cast<uint64_t>(key.n));
    mix(static_cast<uint64_t>(key.k));
    mix(static_cast<uint64_t>(key.lda));
    mix(static_cast<uint64_t>(key.ldb));
    mix(static_cast<uint64_t>(key.ldc));
    mix(a);
    mix(b);
    mix(key.bias);
    mix(static_cast<uint64_t>(key.act));
    mix(static_cast<uint64_t>(key.threads));
    return static_cast<size_t>(h);
  }
};

Key key_of(const GemmCall& c, int threads) {
  return Key{c.trans_a, c.trans_b, c.m,    c.n,    c.k,           c.lda, c.ldb,
             c.ldc,     c.alpha,   c.beta, c.bias != nullptr, c.act, threads};
}

void check(dnnl_status_t s, const char* what) {
  if (s != dnnl_success) fail("oneDNN: ", what, " failed (status ", static_cast<int>(s), ")");
}

// Sets OpenMP's thread count for the lifetime of the guard (oneDNN's OpenMP runtime reads it
// when it creates and when it runs a primitive).
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(omp_get_max_threads()), n_(n) {
    if (n_ != saved_) omp_set_num_threads(n_);
  }
  ~ThreadCount() {
    if (n_ != saved_) omp_set_num_threads(saved_);
  }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int saved_, n_;
};

const char* isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "no JIT (reference kernels)";
  }
}

}  // namespace

// A primitive's argument memory objects, made once (bias and scratch only when it has them).
struct ArgumentMemories {
  dnnl::memory a, b, c, bias, scratch;

  ArgumentMemories() = default;
  ArgumentMemories(const dnnl::matmul::primitive_desc& pd, const dnnl::engine& engine, bool with_bias) {
    a = dnnl::memory(pd.src_desc(), engine, DNNL_MEMORY_NONE);
    b = dnnl::memory(pd.weights_desc(), engine, DNNL_MEMORY_NONE);
    c = dnnl::memory(pd.dst_desc(), engine, DNNL_MEMORY_NONE);
    if (with_bias) bias = dnnl::memory(pd.bias_desc(), engine, DNNL_MEMORY_NONE);
    if (pd.scratchpad_desc().get_size() > 0) scratch = dnnl::memory(pd.scratchpad_desc(), engine, DNNL_MEMORY_NONE);
  }

  // Points them at a call's buffers and lists them as execute arguments; returns how many.
  // Through the C API: executing builds no std::unordered_map of arguments on our side.
  int bind(const GemmCall& call, void* scratchpad, dnnl_exec_arg_t (&args)[5]) const {
    int n = 0;
    check(dnnl_memory_set_data_handle(a.get(), const_cast<float*>(call.a)), "set A");
    check(dnnl_memory_set_data_handle(b.get(), const_cast<float*>(call.b)), "set B");
    check(dnnl_memory_set_data_handle(c.get(), call.c), "set C");
    args[n++] = {DNNL_ARG_SRC, a.get()};
    args[n++] = {DNNL_ARG_WEIGHTS, b.get()};
    args[n++] = {DNNL_ARG_DST, c.get()};
    if (call.bias) {
      check(dnnl_memory_set_data_handle(bias.get(), const_cast<float*>(call.bias)), "set bias");
      args[n++] = {DNNL_ARG_BIAS, bias.get()};
    }
    if (scratch) {
      check(dnnl_memory_set_data_handle(scratch.get(), scratchpad), "set scratchpad");
      args[n++] = {DNNL_ARG_SCRATCHPAD, scratch.get()};
    }
    return n;
  }
};

struct OnednnMatmul::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};

  struct Entry {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
    ArgumentMemories memories;  // each run points them at the call's buffers
    size_t scratch_bytes = 0;
  };
  std::unordered_map<Key, Entry, KeyHash> cache;
  bool census_on = false;
  std::unordered_map<Key, ShapeCount, KeyHash> census;
  void* scratch = nullptr;  // shared by every primitive (calls never overlap)
  size_t scratch_capacity = 0;

  ~Impl() { std::free(scratch); }

  Entry& entry(const GemmCall& c, int threads) {
    const Key key = key_of(c, threads);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    return cache.emplace(key, create(c)).first->second;
  }

  // The primitive of a call's shape, made for the current OpenMP thread count.
  void make_primitive(const GemmCall& c, dnnl::matmul::primitive_desc& pd, dnnl::matmul& prim) {
    using dnnl::memory;
    const memory::dims a_strides = c.trans_a ? memory::dims{1, c.lda} : memory::dims{c.lda, 1};
    const memory::dims b_strides = c.trans_b ? memory::dims{1, c.ldb} : memory::dims{c.ldb, 1};
    const memory::desc a_md({c.m, c.k}, memory::data_type::f32, a_strides);
    const memory::desc b_md({c.k, c.n}, memory::data_type::f32, b_strides);
    const memory::desc c_md({c.m, c.n}, memory::data_type::f32, memory::dims{c.ldc, 1});
    const memory::desc bias_md =
        c.bias ? memory::desc({1, c.n}, memory::data_type::f32, memory::dims{c.n, 1}) : memory::desc();

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (c.alpha != 1.f) attr.set_output_scales(0, {c.alpha});
    dnnl::post_ops po;
    if (c.beta != 0.f) po.append_sum(c.beta);
    if (c.act == Act::LeakyRelu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, kLeakySlope, 0.f);
    if (c.act == Act::Relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(po);

    try {
      const dnnl::matmul::desc d = c.bias ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md)
                                          : dnnl::matmul::desc(a_md, b_md, c_md);
      pd = dnnl::matmul::primitive_desc(d, attr, engine);
      prim = dnnl::matmul(pd);
    } catch (const dnnl::error& err) {
      fail("oneDNN matmul ", c.trans_a ? "A^T " : "A ", c.trans_b ? "B^T " : "B ", c.m, "x", c.n,
           "x", c.k, " (lda ", c.lda, ", ldb ", c.ldb, ", ldc ", c.ldc, "): ", err.what());
    }
  }

  Entry create(const GemmCall& c) {
    using dnnl::memory;
    Entry e;
    make_primitive(c, e.pd, e.prim);
    e.memories = ArgumentMemories(e.pd, engine, c.bias != nullptr);
    e.scratch_bytes = e.pd.scratchpad_desc().get_size();
    if (e.scratch_bytes > 0) {
      if (e.scratch_bytes > scratch_capacity) {
        std::free(scratch);
        const size_t bytes = (e.scratch_bytes + 4095) / 4096 * 4096;
        scratch = std::aligned_alloc(4096, bytes);
        if (scratch == nullptr) fail("out of host memory: oneDNN scratchpad of ", bytes, " bytes");
        std::memset(scratch, 0, bytes);  // touch the pages now, not inside a step
        scratch_capacity = bytes;
      }
    }
    return e;
  }

  std::unordered_map<Key, std::unique_ptr<SingleThreadGemm>, KeyHash> single_thread;
};

struct OnednnMatmul::SingleThreadGemm::Impl {
  dnnl::engine engine;
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  bool bias = false;
  size_t scratch_bytes = 0;
};

OnednnMatmul::SingleThreadGemm::SingleThreadGemm() : impl_(std::make_unique<Impl>()) {}
OnednnMatmul::SingleThreadGemm::~SingleThreadGemm() = default;

size_t OnednnMatmul::SingleThreadGemm::scratch_bytes() const { return impl_->scratch_bytes; }

void OnednnMatmul::SingleThreadGemm::run(const GemmCall& c, void* scratch) const {
  // Per call: its own argument handles and stream, so concurrent calls share nothing mutable.
  // Inside an OpenMP parallel region oneDNN runs the primitive on the calling thread; outside
  // one it has the one thread it was made for.
  const Impl& p = *impl_;
  ArgumentMemories memories(p.pd, p.engine, p.bias);
  dnnl::stream stream(p.engine);
  dnnl_exec_arg_t args[5];
  const int n = memories.bind(c, scratch, args);
  check(dnnl_primitive_execute(p.prim.get(), stream.get(), n, args), "matmul execute");
  check(dnnl_stream_wait(stream.get()), "stream wait");
}

const OnednnMatmul::SingleThreadGemm& OnednnMatmul::single_thread_gemm(const GemmCall& shape) {
  const Key key = key_of(shape, 1);
  auto it = impl_->single_thread.find(key);
  if (it != impl_->single_thread.end()) return *it->second;
  auto g = std::make_unique<SingleThreadGemm>();
  {
    ThreadCount tc(1);
    impl_->make_primitive(shape, g->impl_->pd, g->impl_->prim);
  }
  g->impl_->engine = impl_->engine;
  g->impl_->bias = shape.bias != nullptr;
  g->impl_->scratch_bytes = g->impl_->pd.scratchpad_desc().get_size();
  return *impl_->single_thread.emplace(key, std::move(g)).first->second;
}

OnednnMatmul::OnednnMatmul() : impl_(std::make_unique<Impl>()) {}
OnednnMatmul::~OnednnMatmul() = default;

size_t OnednnMatmul::primitives() const { return impl_->cache.size(); }

std::string OnednnMatmul::implementation(const GemmCall& call, int threads) {
  if (threads <= 0) threads = omp_get_max_threads();
  ThreadCount tc(threads);
  return impl_->entry(call, threads).pd.impl_info_str();
}

void OnednnMatmul::run(const GemmCall& c, int threads) {
  if (threads <= 0) threads = omp_get_max_threads();
  ThreadCount tc(threads);
  Impl::Entry& e = impl_->entry(c, threads);
  dnnl_exec_arg_t args[5];
  const int n = e.memories.bind(c, impl_->scratch, args);
  const auto t0 = impl_->census_on ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  check(dnnl_primitive_execute(e.prim.get(), impl_->stream.get(), n, args), "matmul execute");
  check(dnnl_stream_wait(impl_->stream.get()), "stream wait");
  if (impl_->census_on)
    count_in_census(c, threads, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

bool OnednnMatmul::census_running() const { return impl_->census_on; }

void OnednnMatmul::count_in_census(const GemmCall& c, int threads, double seconds) {
  if (!impl_->census_on) return;
  ShapeCount& sc = impl_->census[key_of(c, threads)];
  if (sc.count++ == 0) {
    sc.shape = c;
    sc.shape.a = sc.shape.b = sc.shape.bias = nullptr;
    sc.shape.c = nullptr;
    sc.has_bias = c.bias != nullptr;
    sc.threads = threads;
  }
  sc.seconds += seconds;
}

void OnednnMatmul::start_census() {
  impl_->census.clear();
  impl_->census_on = true;
}

std::vector<OnednnMatmul::ShapeCount> OnednnMatmul::stop_census() {
  impl_->census_on = false;
  std::vector<std::pair<Key, ShapeCount>> sorted(impl_->census.begin(), impl_->census.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<ShapeCount> out;
  for (const auto& kv : sorted) out.push_back(kv.second);
  impl_->census.clear();
  return out;
}

OnednnMatmul& onednn_matmul() {
  static OnednnMatmul instance;
  return instance;
}

std::string onednn_summary() {
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream os;
  os << "oneDNN " << v->major << "." << v->minor << "." << v->patch << ", "
     << isa_name(dnnl_get_effective_cpu_isa());
  return os.str();
}

std::string onednn_slow_path_warning() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx2) return "";
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  // A probe of the round's typical shape: which kernel family would it run on?
  GemmCall probe;
  probe.m = 32;
  probe.n = 256;
  probe.k = 256;
  probe.lda = 256;
  probe.ldb = 256;
  probe.ldc = 256;
  const std::string impl = onednn_matmul().implementation(probe);
  const bool generic = isa < dnnl_cpu_isa_avx2 || impl.rfind("ref", 0) == 0;
  if (!generic) return "";
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (cap == nullptr) cap = std::getenv("DNNL_MAX_CPU_ISA");
  std::ostringstream os;
  os << "warning: GEMMs run on oneDNN's generic kernels (" << isa_name(isa) << ", matmul '" << impl
     << "') although this CPU has " << (avx512 ? "AVX-512" : "AVX2") << ": ";
  if (cap != nullptr)
    os << "unset ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA (now '" << cap << "')";
  else
    os << "install a oneDNN built with its JIT kernels (Debian's libdnnl-dev is)";
  os << "; training will be several times slower";
  return os.str();
}

}  // namespace zscrgan
