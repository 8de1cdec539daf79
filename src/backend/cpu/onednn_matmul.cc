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
#include "oneapi/dnnl/dnnl_version.h"
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
#if DNNL_VERSION_MAJOR < 3
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
#endif
#if DNNL_VERSION_MAJOR > 3 || (DNNL_VERSION_MAJOR == 3 && DNNL_VERSION_MINOR >= 7)
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx512_core_fp16: return "avx512_core_fp16";
    case dnnl_cpu_isa_avx512_core_amx_fp16: return "avx512_core_amx_fp16";
#endif
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case 0: return "no JIT (reference kernels)";
    default: return "an ISA this build does not name";
  }
}

// oneDNN 2 (Debian 12) and 3 (Debian 13) differ in what is used here: 3 makes a
// matmul's primitive descriptor from the memory descriptors directly, drops append_eltwise's
// scale argument, and drops output scales, so alpha becomes a linear post-op ahead of the sum
// (where 2 applied its output scale).
void append_eltwise(dnnl::post_ops& po, dnnl::algorithm alg, float alpha, float beta) {
#if DNNL_VERSION_MAJOR >= 3
  po.append_eltwise(alg, alpha, beta);
#else
  po.append_eltwise(1.f, alg, alpha, beta);
#endif
}
dnnl::primitive_attr matmul_attr(float alpha, float beta, Act act) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops po;
#if DNNL_VERSION_MAJOR >= 3
  if (alpha != 1.f) append_eltwise(po, dnnl::algorithm::eltwise_linear, alpha, 0.f);
#else
  if (alpha != 1.f) attr.set_output_scales(0, {alpha});
#endif
  if (beta != 0.f) po.append_sum(beta);
  if (act == Act::LeakyRelu) append_eltwise(po, dnnl::algorithm::eltwise_relu, kLeakySlope, 0.f);
  if (act == Act::Relu) append_eltwise(po, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  attr.set_post_ops(po);
  return attr;
}
dnnl::matmul::primitive_desc matmul_primitive_desc(const dnnl::engine& engine,
                                                   const dnnl::memory::desc& a,
                                                   const dnnl::memory::desc& b,
                                                   const dnnl::memory::desc* bias,
                                                   const dnnl::memory::desc& c,
                                                   const dnnl::primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return bias ? dnnl::matmul::primitive_desc(engine, a, b, *bias, c, attr)
              : dnnl::matmul::primitive_desc(engine, a, b, c, attr);
#else
  const dnnl::matmul::desc d = bias ? dnnl::matmul::desc(a, b, *bias, c) : dnnl::matmul::desc(a, b, c);
  return dnnl::matmul::primitive_desc(d, attr, engine);
#endif
}

// oneDNN 3.7's brgemm matmul writes a one-column result (n = 1) as if its rows were
// contiguous, whatever their stride ldc (700 x 1 x 1000 with ldc 3: 695 rows wrong, the
// padding between them overwritten). Such calls run into a contiguous column in the scratch
// space, which is then copied to C (and filled from it first when beta reads C).
bool runs_into_dense_column(const GemmCall& c) {
  return DNNL_VERSION_MAJOR >= 3 && c.n == 1 && c.ldc != 1;
}

}  // namespace

// A primitive's argument memory objects, made once (bias and scratch only when it has them),
// and the layout of the scratch space it runs with: oneDNN's scratchpad, then the column.
struct ArgumentMemories {
  dnnl::memory a, b, c, bias, scratch;
  bool dense_column = false;
  size_t column_offset = 0;  // bytes into the scratch space
  size_t scratch_bytes = 0;

  ArgumentMemories() = default;
  ArgumentMemories(const dnnl::matmul::primitive_desc& pd, const dnnl::engine& engine,
                   const GemmCall& shape) {
    a = dnnl::memory(pd.src_desc(), engine, DNNL_MEMORY_NONE);
    b = dnnl::memory(pd.weights_desc(), engine, DNNL_MEMORY_NONE);
    c = dnnl::memory(pd.dst_desc(), engine, DNNL_MEMORY_NONE);
    if (shape.bias) bias = dnnl::memory(pd.bias_desc(), engine, DNNL_MEMORY_NONE);
    if (pd.scratchpad_desc().get_size() > 0)
      scratch = dnnl::memory(pd.scratchpad_desc(), engine, DNNL_MEMORY_NONE);
    dense_column = runs_into_dense_column(shape);
    column_offset = column_offset_of(pd);
    scratch_bytes = scratch_bytes_of(pd, shape);
  }
  static size_t column_offset_of(const dnnl::matmul::primitive_desc& pd) {
    return (pd.scratchpad_desc().get_size() + 63) / 64 * 64;
  }
  static size_t scratch_bytes_of(const dnnl::matmul::primitive_desc& pd, const GemmCall& shape) {
    if (!runs_into_dense_column(shape)) return pd.scratchpad_desc().get_size();
    return column_offset_of(pd) + sizeof(float) * static_cast<size_t>(shape.m);
  }

  // Runs the primitive on a call's buffers. Through the C API: executing builds no
  // std::unordered_map of arguments on our side.
  void execute(const dnnl::matmul& prim, const dnnl::stream& stream, const GemmCall& call,
               void* scratch_space) const {
    float* column = dense_column ? reinterpret_cast<float*>(static_cast<char*>(scratch_space) + column_offset) : nullptr;
    if (column != nullptr && call.beta != 0.f)
      for (int i = 0; i < call.m; ++i) column[i] = call.c[static_cast<int64_t>(i) * call.ldc];
    dnnl_exec_arg_t args[5];
    int n = 0;
    check(dnnl_memory_set_data_handle(a.get(), const_cast<float*>(call.a)), "set A");
    check(dnnl_memory_set_data_handle(b.get(), const_cast<float*>(call.b)), "set B");
    check(dnnl_memory_set_data_handle(c.get(), column != nullptr ? column : call.c), "set C");
    args[n++] = {DNNL_ARG_SRC, a.get()};
    args[n++] = {DNNL_ARG_WEIGHTS, b.get()};
    args[n++] = {DNNL_ARG_DST, c.get()};
    if (call.bias) {
      check(dnnl_memory_set_data_handle(bias.get(), const_cast<float*>(call.bias)), "set bias");
      args[n++] = {DNNL_ARG_BIAS, bias.get()};
    }
    if (scratch) {
      check(dnnl_memory_set_data_handle(scratch.get(), scratch_space), "set scratchpad");
      args[n++] = {DNNL_ARG_SCRATCHPAD, scratch.get()};
    }
    check(dnnl_primitive_execute(prim.get(), stream.get(), n, args), "matmul execute");
    check(dnnl_stream_wait(stream.get()), "stream wait");
    if (column != nullptr)
      for (int i = 0; i < call.m; ++i) call.c[static_cast<int64_t>(i) * call.ldc] = column[i];
  }
};

struct OnednnMatmul::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};

  struct Entry {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
    ArgumentMemories memories;  // each run points them at the call's buffers
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
    const int64_t ldc = runs_into_dense_column(c) ? 1 : c.ldc;
    const memory::desc c_md({c.m, c.n}, memory::data_type::f32, memory::dims{ldc, 1});
    const memory::desc bias_md({1, c.n}, memory::data_type::f32, memory::dims{c.n, 1});
    try {
      pd = matmul_primitive_desc(engine, a_md, b_md, c.bias ? &bias_md : nullptr, c_md,
                                 matmul_attr(c.alpha, c.beta, c.act));
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
    e.memories = ArgumentMemories(e.pd, engine, c);
    const size_t needed = e.memories.scratch_bytes;
    if (needed > 0) {
      if (needed > scratch_capacity) {
        std::free(scratch);
        const size_t bytes = (needed + 4095) / 4096 * 4096;
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
  GemmCall shape;  // the one it was made for: of its pointers only bias is read, as a flag
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
  const ArgumentMemories memories(p.pd, p.engine, p.shape);
  memories.execute(p.prim, dnnl::stream(p.engine), c, scratch);
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
  g->impl_->shape = shape;
  g->impl_->scratch_bytes = ArgumentMemories::scratch_bytes_of(g->impl_->pd, shape);
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
  const auto t0 = impl_->census_on ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  e.memories.execute(e.prim, impl_->stream, c, impl_->scratch);
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
