// Every Backend op as one table of cases, run on every backend this machine has: each case
// names the op, its shapes and a seeded input generator. On the CPU backend the result is held
// against a float64 host reference (plain loops over the per-element math of
// backend/elementwise.h); on the CUDA backend, when one is usable, against the CPU backend's
// result. Whole backing buffers are compared, padding of strided views (ld > cols) included,
// so an op that writes outside its view fails too.
//
// A second table holds BAD calls (wrong shapes, wrong devices, non-1x1 scalars, bad k): each
// must throw an Error naming the op on every backend, and on a backend whose implementations
// only record that they were reached, before any implementation runs: the checks live once in
// Backend, for all backends.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"
#include "backend/elementwise.h"
#include "backend/topk_order.h"
#include "compare.h"
#include "core/error.h"

namespace zscrgan {
namespace {

using zscrgan::testing::all_close;

// ---- case data ------------------------------------------------------------------------------

// A tensor's host image: rows x ld floats (at least one), padding included.
struct HostTensor {
  int rows = 0, cols = 0, ld = 0;
  std::vector<float> data;
  float& at(int r, int c) { return data[static_cast<size_t>(r) * ld + c]; }
};

// What a case's generator makes: tensors and int arrays, uploaded alike to every backend, and
// host arrays for ops that write their results to the host (top-k), given with their initial
// contents.
struct CaseData {
  std::vector<HostTensor> t;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<int32_t>> i32;
  std::vector<std::vector<int64_t>> host_i64;
  std::vector<std::vector<float>> host_f32;
};

HostTensor host_tensor(int rows, int cols, int ld = 0) {
  HostTensor h;
  h.rows = rows;
  h.cols = cols;
  h.ld = std::max(ld, cols);
  h.data.assign(std::max<size_t>(1, static_cast<size_t>(rows) * h.ld), 0.f);
  return h;
}
// N(offset, scale^2) everywhere in the buffer.
HostTensor normal(std::mt19937& rng, int rows, int cols, int ld = 0, float scale = 1.f,
                  float offset = 0.f) {
  HostTensor h = host_tensor(rows, cols, ld);
  std::normal_distribution<float> n(0.f, 1.f);
  for (float& x : h.data) x = offset + scale * n(rng);
  return h;
}
HostTensor constant(int rows, int cols, float value, int ld = 0) {
  HostTensor h = host_tensor(rows, cols, ld);
  std::fill(h.data.begin(), h.data.end(), value);
  return h;
}

// The reference's view of the same data, in double.
struct RefTensor {
  int rows = 0, cols = 0, ld = 0;
  std::vector<double> v;
  double& at(int r, int c) { return v[static_cast<size_t>(r) * ld + c]; }
  double at(int r, int c) const { return v[static_cast<size_t>(r) * ld + c]; }
  float f(int r, int c) const { return static_cast<float>(at(r, c)); }
};
struct RefData {
  std::vector<RefTensor> t;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<int32_t>> i32;
  std::vector<std::vector<int64_t>> host_i64;
  std::vector<std::vector<float>> host_f32;
};

// The case's data placed on one backend.
struct Args {
  std::vector<Tensor> t;
  std::vector<int64_t*> i64;
  std::vector<int32_t*> i32;
  std::vector<int64_t*> host_i64;
  std::vector<float*> host_f32;
};

// What an op left behind, read back from a backend (or computed by the reference).
struct Results {
  std::vector<std::vector<float>> t;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<int32_t>> i32;
  std::vector<std::vector<int64_t>> host_i64;
  std::vector<std::vector<float>> host_f32;
};

struct Tol {
  double abs = 0, rel = 0;
};

struct OpCase {
  std::string op;    // the Backend call under test
  std::string what;  // its shapes and options
  std::function<CaseData(std::mt19937&)> make;
  std::function<void(Backend&, const Args&)> run;
  std::function<void(RefData&)> reference;  // rewrites the data to what run leaves behind
  Tol cpu;   // CPU backend vs the float64 reference
  Tol cuda;  // CUDA backend vs the CPU backend
};

// Uploads a case's data to a backend and frees it afterwards.
class Placement {
 public:
  Placement(Backend& be, const CaseData& d) : be_(be), data_(d) {
    for (const HostTensor& h : d.t) {
      float* p = static_cast<float*>(own(h.data.size() * sizeof(float)));
      be.upload_bytes(p, h.data.data(), h.data.size() * sizeof(float));
      args.t.push_back(Tensor(p, h.rows, h.cols, h.ld, be.device()));
    }
    for (const auto& v : d.i64) args.i64.push_back(static_cast<int64_t*>(upload(v)));
    for (const auto& v : d.i32) args.i32.push_back(static_cast<int32_t*>(upload(v)));
    host_i64_ = d.host_i64;
    host_f32_ = d.host_f32;
    for (auto& v : host_i64_) args.host_i64.push_back(v.data());
    for (auto& v : host_f32_) args.host_f32.push_back(v.data());
  }
  ~Placement() {
    try {
      be_.synchronize();
    } catch (...) {
    }
    for (void* p : owned_) be_.deallocate(p);
  }
  Placement(const Placement&) = delete;
  Placement& operator=(const Placement&) = delete;

  Results fetch() {
    Results r;
    for (size_t i = 0; i < args.t.size(); ++i) {
      r.t.emplace_back(data_.t[i].data.size());
      be_.download_bytes(r.t.back().data(), args.t[i].data, r.t.back().size() * sizeof(float));
    }
    for (size_t i = 0; i < args.i64.size(); ++i) {
      r.i64.emplace_back(data_.i64[i].size());
      be_.download_bytes(r.i64.back().data(), args.i64[i], r.i64.back().size() * sizeof(int64_t));
    }
    for (size_t i = 0; i < args.i32.size(); ++i) {
      r.i32.emplace_back(data_.i32[i].size());
      be_.download_bytes(r.i32.back().data(), args.i32[i], r.i32.back().size() * sizeof(int32_t));
    }
    r.host_i64 = host_i64_;
    r.host_f32 = host_f32_;
    return r;
  }

  Args args;

 private:
  void* own(size_t bytes) {
    void* p = be_.allocate(std::max<size_t>(bytes, 4));
    owned_.push_back(p);
    return p;
  }
  template <class I>
  void* upload(const std::vector<I>& v) {
    void* p = own(v.size() * sizeof(I));
    be_.upload_bytes(p, v.data(), v.size() * sizeof(I));
    return p;
  }
  Backend& be_;
  const CaseData& data_;
  std::vector<void*> owned_;
  std::vector<std::vector<int64_t>> host_i64_;
  std::vector<std::vector<float>> host_f32_;
};

Results reference_results(const OpCase& c, const CaseData& d) {
  RefData ref;
  for (const HostTensor& h : d.t) {
    RefTensor r;
    r.rows = h.rows;
    r.cols = h.cols;
    r.ld = h.ld;
    r.v.assign(h.data.begin(), h.data.end());
    ref.t.push_back(std::move(r));
  }
  ref.i64 = d.i64;
  ref.i32 = d.i32;
  ref.host_i64 = d.host_i64;
  ref.host_f32 = d.host_f32;
  c.reference(ref);
  Results out;
  for (const RefTensor& r : ref.t) out.t.emplace_back(r.v.begin(), r.v.end());
  out.i64 = ref.i64;
  out.i32 = ref.i32;
  out.host_i64 = ref.host_i64;
  out.host_f32 = ref.host_f32;
  return out;
}

// Expects got == want within tol, tensor by tensor; ints exactly.
void expect_results(const Results& want, const Results& got, Tol tol, const std::string& what) {
  ASSERT_EQ(want.t.size(), got.t.size());
  for (size_t i = 0; i < want.t.size(); ++i)
    EXPECT_TRUE(all_close(want.t[i], got.t[i], tol.abs, tol.rel,
                          what + ", tensor " + std::to_string(i)));
  EXPECT_EQ(want.i64, got.i64) << what << ": int64 arrays";
  EXPECT_EQ(want.i32, got.i32) << what << ": int32 arrays";
  ASSERT_EQ(want.host_f32.size(), got.host_f32.size());
  for (size_t i = 0; i < want.host_f32.size(); ++i)
    EXPECT_TRUE(all_close(want.host_f32[i], got.host_f32[i], tol.abs, tol.rel,
                          what + ", host array " + std::to_string(i)));
  ASSERT_EQ(want.host_i64.size(), got.host_i64.size());
  for (size_t i = 0; i < want.host_i64.size(); ++i) {
    ASSERT_EQ(want.host_i64[i].size(), got.host_i64[i].size()) << what;
    // Index lists: name the first few entries that differ rather than dumping the arrays.
    int shown = 0;
    for (size_t j = 0; j < want.host_i64[i].size() && shown < 5; ++j)
      if (want.host_i64[i][j] != got.host_i64[i][j]) {
        ADD_FAILURE() << what << ", host index array " << i << " at " << j << ": expected "
                      << want.host_i64[i][j] << ", got " << got.host_i64[i][j];
        ++shown;
      }
  }
}

// ---- reference helpers ------------------------------------------------------------------------

double act_d(double x, Act a) {
  if (a == Act::LeakyRelu) return x < kLeakySlope * x ? kLeakySlope * x : x;
  if (a == Act::Relu) return x < 0 ? 0 : x;
  return x;
}
const char* act_name(Act a) { return a == Act::None ? "none" : a == Act::LeakyRelu ? "lrelu" : "relu"; }
const Act kActs[] = {Act::None, Act::LeakyRelu, Act::Relu};

// C = act(alpha op(A) op(B) + bias + beta C); no activation without a bias.
void ref_gemm(bool ta, bool tb, double alpha, const RefTensor& a, const RefTensor& b, double beta,
              RefTensor& c, const RefTensor* bias, Act act) {
  const int k = ta ? a.rows : a.cols;
  for (int i = 0; i < c.rows; ++i)
    for (int j = 0; j < c.cols; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) s += (ta ? a.at(p, i) : a.at(i, p)) * (tb ? b.at(j, p) : b.at(p, j));
      double v = alpha * s + (beta != 0 ? beta * c.at(i, j) : 0.0);  // beta 0: C is not read
      if (bias != nullptr) v = act_d(v + bias->at(0, j), act);
      c.at(i, j) = v;
    }
}

std::string shape(int r, int c) { return std::to_string(r) + "x" + std::to_string(c); }

// A GEMM's C before the call: with beta 0 it must be written without being read, so it starts
// as NaN (padding included), which survives any read; otherwise N(0, 1).
HostTensor initial_c(std::mt19937& rng, int rows, int cols, int ld, float beta) {
  return beta == 0.f ? constant(rows, cols, std::nanf(""), ld) : normal(rng, rows, cols, ld);
}

constexpr int kTopkDim = 16;

double ref_cosine(const double* a, const double* b, int dim) {
  double aa = 0, bb = 0, ab = 0;
  for (int i = 0; i < dim; ++i) {
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    ab += a[i] * b[i];
  }
  return ab / std::sqrt(std::max(aa, 1e-12)) / std::sqrt(std::max(bb, 1e-12));
}

// Queries (t[0]) and a gallery of prototype copies (t[1]), as the top-k cases describe, and
// the host lists (index, score) prefilled with garbage that the op must overwrite.
CaseData topk_case_data(std::mt19937& rng, int gallery_rows, int query_rows, int n_proto,
                        int ld_gallery, int ld_queries, int k) {
  std::uniform_int_distribution<int> value(-3, 3);
  auto draw = [&] {
    std::vector<double> v(kTopkDim);
    for (auto& x : v) x = value(rng);
    return v;
  };
  std::vector<std::vector<double>> protos;
  while (static_cast<int>(protos.size()) < n_proto) {
    auto v = draw();
    bool ok = ref_cosine(v.data(), v.data(), kTopkDim) > 0.5;  // not all zero
    for (const auto& q : protos) ok = ok && std::fabs(ref_cosine(v.data(), q.data(), kTopkDim)) < 0.999;
    if (ok) protos.push_back(v);
  }
  CaseData d;
  d.t.push_back(host_tensor(query_rows, kTopkDim, ld_queries));
  d.t.push_back(host_tensor(gallery_rows, kTopkDim, ld_gallery));
  HostTensor& queries = d.t[0];
  HostTensor& gallery = d.t[1];
  std::uniform_int_distribution<int> pick(0, n_proto - 1);
  for (int j = 0; j < gallery_rows; ++j) {
    const auto& proto = protos[pick(rng)];
    for (int c = 0; c < kTopkDim; ++c) gallery.at(j, c) = static_cast<float>(proto[c]);
  }
  for (int i = 1; i < query_rows;) {  // row 0 stays all zeros
    auto q = draw();
    if (ref_cosine(q.data(), q.data(), kTopkDim) < 0.5) continue;
    std::vector<double> s;
    for (const auto& proto : protos) s.push_back(ref_cosine(q.data(), proto.data(), kTopkDim));
    std::sort(s.begin(), s.end());
    bool separated = true;
    for (size_t j = 1; j < s.size(); ++j) separated = separated && s[j] - s[j - 1] > 1e-4;
    if (!separated) continue;
    for (int c = 0; c < kTopkDim; ++c) queries.at(i, c) = static_cast<float>(q[c]);
    ++i;
  }
  d.host_i64 = {std::vector<int64_t>(static_cast<size_t>(query_rows) * k, 12345)};
  d.host_f32 = {std::vector<float>(static_cast<size_t>(query_rows) * k, 7.f)};
  return d;
}

// Each query's k best gallery rows by cosine, descending, ties to the lower row; slots past
// the gallery's end hold kEmptyIndex and kEmptyScore.
void ref_topk_cosine(RefData& r, int k, int64_t offset) {
  const RefTensor& q = r.t[0];
  const RefTensor& g = r.t[1];
  for (int i = 0; i < q.rows; ++i) {
    std::vector<std::pair<double, int>> all;
    for (int j = 0; j < g.rows; ++j)
      all.push_back({-ref_cosine(&q.v[static_cast<size_t>(i) * q.ld],
                                 &g.v[static_cast<size_t>(j) * g.ld], q.cols),
                     j});
    const int filled = std::min(k, g.rows);
    std::partial_sort(all.begin(), all.begin() + filled, all.end());
    for (int rank = 0; rank < k; ++rank) {
      const size_t at = static_cast<size_t>(i) * k + rank;
      r.host_i64[0][at] = rank < filled ? all[rank].second + offset : kEmptyIndex;
      r.host_f32[0][at] = rank < filled ? static_cast<float>(-all[rank].first) : kEmptyScore;
    }
  }
}

// ---- the table of op cases ----------------------------------------------------------------

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases;
  auto add = [&](OpCase c) { cases.push_back(std::move(c)); };

  // -- fill, copy, axpy: strided views, one row, one column
  struct Shape {
    int rows, cols, ld;
  };
  for (Shape s : {Shape{37, 129, 140}, Shape{1, 300, 0}, Shape{300, 1, 3}, Shape{1, 1, 0}}) {
    add({"fill", shape(s.rows, s.cols) + " ld " + std::to_string(s.ld),
         [=](std::mt19937& rng) { return CaseData{{normal(rng, s.rows, s.cols, s.ld)}}; },
         [](Backend& be, const Args& a) { be.fill(a.t[0], 0.5f); },
         [](RefData& r) {
           for (int i = 0; i < r.t[0].rows; ++i)
             for (int j = 0; j < r.t[0].cols; ++j) r.t[0].at(i, j) = 0.5;
         },
         {0, 0}, {0, 0}});
    add({"copy", shape(s.rows, s.cols),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, s.rows, s.cols, s.ld + 2), normal(rng, s.rows, s.cols, s.ld + 31)}};
         },
         [](Backend& be, const Args& a) { be.copy(a.t[1], a.t[0]); },
         [](RefData& r) {
           for (int i = 0; i < r.t[0].rows; ++i)
             for (int j = 0; j < r.t[0].cols; ++j) r.t[1].at(i, j) = r.t[0].at(i, j);
         },
         {0, 0}, {0, 0}});
    add({"axpy", shape(s.rows, s.cols),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, s.rows, s.cols, s.ld + 10), normal(rng, s.rows, s.cols)}};
         },
         [](Backend& be, const Args& a) { be.axpy(a.t[0], -0.7f, a.t[1]); },
         [](RefData& r) {
           for (int i = 0; i < r.t[0].rows; ++i)
             for (int j = 0; j < r.t[0].cols; ++j) r.t[0].at(i, j) += -0.7 * r.t[1].at(i, j);
         },
         {1e-6, 1e-6}, {1e-6, 1e-6}});
  }

  // -- gather_rows, eager and stepped (a replayed step reads slice *step of the indices)
  for (bool stepped : {false, true})
    add({"gather_rows", std::string("20 of 50 rows x 129") + (stepped ? ", stepped" : ""),
         [](std::mt19937& rng) {
           CaseData d{{normal(rng, 50, 129, 133), normal(rng, 20, 129, 140)}};
           std::uniform_int_distribution<int> pick(0, 49);
           d.i32.emplace_back(3 * 20);
           for (auto& i : d.i32[0]) i = pick(rng);
           d.i64.push_back({2});
           return d;
         },
         [stepped](Backend& be, const Args& a) {
           be.gather_rows(a.t[1], a.t[0],
                          stepped ? IndexSpan{a.i32[0], 20, a.i64[0], 20} : IndexSpan{a.i32[0], 20});
         },
         [stepped](RefData& r) {
           const size_t first = stepped ? size_t(r.i64[0][0]) * 20 : 0;
           for (int i = 0; i < 20; ++i)
             for (int j = 0; j < 129; ++j) r.t[1].at(i, j) = r.t[0].at(r.i32[0][first + i], j);
         },
         {0, 0}, {0, 0}});

  // -- GEMMs: all four transposes, strided, with and without beta; one-row and one-column
  // operands; the published size; an empty inner dimension. `fused`: also as gemm_bias_act.
  struct Gemm {
    int m, n, k, lda, ldb, ldc;
    float beta;
    bool fused;
  };
  std::vector<Gemm> gemms;
  for (float beta : {0.f, 0.3f}) gemms.push_back({37, 129, 65, 80, 131, 140, beta, beta != 0.f});
  for (Gemm g : {Gemm{1, 129, 65}, Gemm{37, 1, 65}, Gemm{37, 129, 1}, Gemm{1, 1, 300}, Gemm{1, 1, 1},
                 Gemm{300, 1, 1}}) {
    g.beta = 0.5f;
    g.fused = g.m == 37;
    gemms.push_back(g);
  }
  // The CPU's skinny path (n = 1 or k = 1, in loops up to kSkinnyGemmMaxFlops) where the
  // critic's output layer takes it: strided, beta 0; and a one-column GEMM above that size.
  for (const Gemm& g : {Gemm{96, 1, 128, 140, 3, 5, 0.f, true}, Gemm{96, 128, 1, 3, 140, 133, 0.f, true},
                        Gemm{700, 1, 1000, 1010, 2, 3, 0.f, true}})
    gemms.push_back(g);
  for (const Gemm& g : gemms)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const std::string what = shape(g.m, g.n) + " k " + std::to_string(g.k) + (ta ? " A^T" : "") +
                                 (tb ? " B^T" : "") + " beta " + std::to_string(g.beta);
        add({"gemm", what,
             [=](std::mt19937& rng) {
               return CaseData{{ta ? normal(rng, g.k, g.m, g.lda) : normal(rng, g.m, g.k, g.lda),
                                tb ? normal(rng, g.n, g.k, g.ldb) : normal(rng, g.k, g.n, g.ldb),
                                initial_c(rng, g.m, g.n, g.ldc, g.beta)}};
             },
             [=](Backend& be, const Args& a) { be.gemm(ta, tb, 0.7f, a.t[0], a.t[1], g.beta, a.t[2]); },
             [=](RefData& r) { ref_gemm(ta, tb, 0.7, r.t[0], r.t[1], g.beta, r.t[2], nullptr, Act::None); },
             {1e-4, 1e-5}, {1e-4, 1e-5}});
        for (Act act : kActs) {
          if (!g.fused) continue;
          add({"gemm_bias_act", what + " " + act_name(act),
               [=](std::mt19937& rng) {
                 return CaseData{{ta ? normal(rng, g.k, g.m, g.lda) : normal(rng, g.m, g.k, g.lda),
                                  tb ? normal(rng, g.n, g.k, g.ldb) : normal(rng, g.k, g.n, g.ldb),
                                  initial_c(rng, g.m, g.n, g.ldc, g.beta), normal(rng, 1, g.n)}};
               },
               [=](Backend& be, const Args& a) {
                 be.gemm_bias_act(ta, tb, a.t[0], a.t[1], g.beta, a.t[2], a.t[3], act);
               },
               [=](RefData& r) { ref_gemm(ta, tb, 1.0, r.t[0], r.t[1], g.beta, r.t[2], &r.t[3], act); },
               {1e-4, 1e-5}, {1e-4, 1e-5}});
        }
      }
  add({"gemm", "published size 32x1024 * (2048x1024)^T",
       [](std::mt19937& rng) {
         return CaseData{{normal(rng, 32, 1024, 0, 0.05f), normal(rng, 2048, 1024, 0, 0.05f),
                          normal(rng, 32, 2048)}};
       },
       [](Backend& be, const Args& a) { be.gemm(false, true, 1.f, a.t[0], a.t[1], 0.f, a.t[2]); },
       [](RefData& r) { ref_gemm(false, true, 1.0, r.t[0], r.t[1], 0.0, r.t[2], nullptr, Act::None); },
       {1e-5, 1e-4}, {1e-4, 1e-4}});
  add({"gemm", "empty inner dimension: C = beta C",
       [](std::mt19937& rng) {
         return CaseData{{host_tensor(37, 0), host_tensor(0, 129), normal(rng, 37, 129, 140)}};
       },
       [](Backend& be, const Args& a) { be.gemm(false, false, 1.f, a.t[0], a.t[1], 0.5f, a.t[2]); },
       [](RefData& r) { ref_gemm(false, false, 1.0, r.t[0], r.t[1], 0.5, r.t[2], nullptr, Act::None); },
       {0, 0}, {0, 0}});
  add({"gemm", "empty inner dimension, beta 0: C = 0 over NaN",
       [](std::mt19937& rng) { return CaseData{{host_tensor(37, 0), host_tensor(0, 129), initial_c(rng, 37, 129, 140, 0.f)}}; },
       [](Backend& be, const Args& a) { be.gemm(false, false, 1.f, a.t[0], a.t[1], 0.f, a.t[2]); },
       [](RefData& r) { ref_gemm(false, false, 1.0, r.t[0], r.t[1], 0.0, r.t[2], nullptr, Act::None); },
       {0, 0}, {0, 0}});
  for (Act act : kActs)
    add({"gemm_bias_act", std::string("empty inner dimension, beta 0: C = act(bias) over NaN ") + act_name(act),
         [](std::mt19937& rng) {
           return CaseData{{host_tensor(37, 0), host_tensor(0, 129), initial_c(rng, 37, 129, 140, 0.f),
                            normal(rng, 1, 129)}};
         },
         [=](Backend& be, const Args& a) { be.gemm_bias_act(false, false, a.t[0], a.t[1], 0.f, a.t[2], a.t[3], act); },
         [=](RefData& r) { ref_gemm(false, false, 1.0, r.t[0], r.t[1], 0.0, r.t[2], &r.t[3], act); },
         {1e-6, 1e-6}, {0, 1e-6}});

  // -- bias and activation: forward, and backward with both, one or the other gradient; 1000
  // rows span several row chunks of the two-stage column sums, 17,000 columns more than a grid
  // row of blocks.
  for (Act act : kActs) {
    for (Shape s : {Shape{37, 129, 140}, Shape{70, 17000, 0}})
      add({"bias_act_forward", shape(s.rows, s.cols) + " " + act_name(act),
           [=](std::mt19937& rng) { return CaseData{{normal(rng, s.rows, s.cols, s.ld), normal(rng, 1, s.cols)}}; },
           [=](Backend& be, const Args& a) { be.bias_act_forward(a.t[0], a.t[1], act); },
           [=](RefData& r) {
             for (int i = 0; i < r.t[0].rows; ++i)
               for (int j = 0; j < r.t[0].cols; ++j) r.t[0].at(i, j) = act_d(r.t[0].at(i, j) + r.t[1].at(0, j), act);
           },
           {1e-6, 1e-6}, {0, 1e-6}});
    for (int rows : {37, 300, 1000, 70})
      for (int variant = 0; variant < 3; ++variant) {  // both, d_pre only, d_bias only
        const int cols = rows == 70 ? 17000 : 129;
        if (cols == 17000 && variant == 1) continue;
        const bool want_pre = variant != 2, want_bias = variant != 1;
        add({"bias_act_backward",
             shape(rows, cols) + " " + act_name(act) + (want_pre ? " d_pre" : "") + (want_bias ? " d_bias" : ""),
             [=](std::mt19937& rng) {
               HostTensor y = normal(rng, rows, cols, cols == 129 ? 140 : 0);
               for (float& v : y.data) v = act_forward(v, act);  // an output: exact zeros under ReLU
               return CaseData{{y, normal(rng, rows, cols, cols == 129 ? 135 : 0),
                                normal(rng, rows, cols, cols == 129 ? 150 : 0), normal(rng, 1, cols)}};
             },
             [=](Backend& be, const Args& a) {
               be.bias_act_backward(a.t[0], a.t[1], want_pre ? a.t[2] : Tensor(),
                                    want_bias ? a.t[3] : Tensor(), act);
             },
             [=](RefData& r) {
               for (int j = 0; j < cols; ++j) {
                 double sum = 0;
                 for (int i = 0; i < rows; ++i) {
                   const double g = r.t[1].at(i, j) * act_grad_from_output(r.t[0].f(i, j), act);
                   if (want_pre) r.t[2].at(i, j) += g;
                   sum += g;
                 }
                 if (want_bias) r.t[3].at(0, j) += sum;
               }
             },
             {1e-5, 1e-5}, {1e-4, 1e-5}});
      }
  }
  // -- bias_act_backward as a gradient's first writer (GradWrite::Overwrite, which the tape
  // plans instead of a zero-fill): a stored tensor starts as NaN, which survives any read of
  // it. 1000 rows span several row chunks of the column sums; 0 rows store zero sums.
  struct WriteMode {
    bool has_pre, store_pre, has_bias, store_bias;
  };
  const WriteMode kWriteModes[] = {{true, true, true, true},   {true, true, true, false},
                                   {true, false, true, true},  {false, false, true, true},
                                   {true, true, false, false}};
  for (Act act : kActs)
    for (int rows : {37, 1000, 0})
      for (const WriteMode w : kWriteModes) {
        constexpr int cols = 129;
        const GradWrite pre_write = w.store_pre ? GradWrite::Overwrite : GradWrite::Accumulate;
        const GradWrite bias_write = w.store_bias ? GradWrite::Overwrite : GradWrite::Accumulate;
        auto part = [](bool has, bool store, const char* name) {
          return has ? std::string(", ") + name + (store ? " stored" : " added") : std::string();
        };
        add({"bias_act_backward",
             shape(rows, cols) + " " + act_name(act) + part(w.has_pre, w.store_pre, "d_pre") +
                 part(w.has_bias, w.store_bias, "d_bias"),
             [=](std::mt19937& rng) {
               HostTensor y = normal(rng, rows, cols, 140);
               for (float& v : y.data) v = act_forward(v, act);
               const float nan = std::nanf("");
               return CaseData{{y, normal(rng, rows, cols, 135),
                                w.store_pre ? constant(rows, cols, nan, 150) : normal(rng, rows, cols, 150),
                                w.store_bias ? constant(1, cols, nan) : normal(rng, 1, cols)}};
             },
             [=](Backend& be, const Args& a) {
               be.bias_act_backward(a.t[0], a.t[1], w.has_pre ? a.t[2] : Tensor(),
                                    w.has_bias ? a.t[3] : Tensor(), act, pre_write, bias_write);
             },
             [=](RefData& r) {
               for (int j = 0; j < cols; ++j) {
                 double sum = 0;
                 for (int i = 0; i < rows; ++i) {
                   const double g = r.t[1].at(i, j) * act_grad_from_output(r.t[0].f(i, j), act);
                   if (w.has_pre) r.t[2].at(i, j) = (w.store_pre ? 0.0 : r.t[2].at(i, j)) + g;
                   sum += g;
                 }
                 if (w.has_bias) r.t[3].at(0, j) = (w.store_bias ? 0.0 : r.t[3].at(0, j)) + sum;
               }
             },
             {1e-5, 1e-5}, {1e-4, 1e-5}});
      }

  // -- noise: a pure function of (stream, element), eager and with step and base counters
  for (bool truncated : {false, true})
    for (Shape s : {Shape{37, 129, 140}, Shape{300, 1024, 0}, Shape{1, 1, 0}})
      for (bool stepped : {false, true}) {
        const std::string op = truncated ? "fill_truncated_normal" : "fill_normal";
        add({op, shape(s.rows, s.cols) + (stepped ? ", stepped from a base" : ""),
             [=](std::mt19937& rng) {
               CaseData d{{normal(rng, s.rows, s.cols, s.ld)}};
               d.i64 = {{5}, {123456}};  // step counter, base offset
               return d;
             },
             [=](Backend& be, const Args& a) {
               NoiseStream ns{42, 7, stepped ? a.i64[0] : nullptr, stepped ? 1000u : 0u,
                              stepped ? a.i64[1] : nullptr};
               if (truncated)
                 be.fill_truncated_normal(a.t[0], ns);
               else
                 be.fill_normal(a.t[0], ns);
             },
             [=](RefData& r) {
               NoiseStream ns{42, 7, stepped ? r.i64[0].data() : nullptr, stepped ? 1000u : 0u,
                              stepped ? r.i64[1].data() : nullptr};
               const NoiseStream rs = resolve_stream(ns);
               RefTensor& t = r.t[0];
               for (int i = 0; i < t.rows; ++i)
                 for (int j = 0; j < t.cols; ++j) {
                   const uint64_t e = static_cast<uint64_t>(i) * t.cols + j;
                   t.at(i, j) = truncated ? philox_truncated_normal(rs, e) : philox_normal(rs, e);
                 }
             },
             {0, 0}, {1e-6, 0}});
      }

  // -- reparameterised sampling
  for (Shape s : {Shape{37, 65, 0}, Shape{1, 1, 0}}) {
    const int b = s.rows, e = s.cols;
    add({"reparam_forward", "h " + shape(b, 2 * e),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, b, 2 * e, 2 * e + 10, 0.5f), normal(rng, b, e, e + 5),
                            normal(rng, b, e, e + 15)}};
         },
         [](Backend& be, const Args& a) { be.reparam_forward(a.t[0], a.t[1], a.t[2]); },
         [=](RefData& r) {
           for (int i = 0; i < b; ++i)
             for (int j = 0; j < e; ++j)
               r.t[2].at(i, j) = r.t[0].at(i, j) + std::exp(r.t[0].at(i, e + j)) * r.t[1].at(i, j);
         },
         {1e-6, 1e-6}, {1e-6, 1e-5}});
    add({"reparam_backward", "h " + shape(b, 2 * e),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, b, 2 * e, 2 * e + 10, 0.5f), normal(rng, b, e, e + 5),
                            normal(rng, b, e, e + 1), normal(rng, b, 2 * e, 2 * e + 20)}};
         },
         [](Backend& be, const Args& a) { be.reparam_backward(a.t[0], a.t[1], a.t[2], a.t[3]); },
         [=](RefData& r) {
           for (int i = 0; i < b; ++i)
             for (int j = 0; j < e; ++j) {
               const double g = r.t[2].at(i, j);
               r.t[3].at(i, j) += g;
               r.t[3].at(i, e + j) += g * std::exp(r.t[0].at(i, e + j)) * r.t[1].at(i, j);
             }
         },
         {1e-6, 1e-6}, {1e-6, 1e-5}});
  }

  // -- losses. The large shapes hold more elements (4.3M) than one reduction pass has blocks x
  // threads; 2000 rows more rows than reduction blocks.
  for (Shape s : {Shape{37, 130, 137}, Shape{100, 2048, 0}, Shape{1100, 4096, 0}, Shape{1, 2, 0}}) {
    const int rows = s.rows, e = s.cols / 2;
    add({"kl_forward", "h " + shape(rows, s.cols),
         [=](std::mt19937& rng) { return CaseData{{normal(rng, rows, s.cols, s.ld, 0.5f), constant(1, 1, 0.f)}}; },
         [](Backend& be, const Args& a) { be.kl_forward(a.t[0], a.t[1]); },
         [=](RefData& r) {
           double sum = 0;
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < e; ++j) sum += kl_element(r.t[0].f(i, j), r.t[0].f(i, e + j));
           r.t[1].at(0, 0) = sum / (double(rows) * e);
         },
         {1e-6, 1e-5}, {1e-6, 1e-4}});
    if (rows == 1100) continue;
    add({"kl_backward", "h " + shape(rows, s.cols),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, rows, s.cols, s.ld, 0.5f), constant(1, 1, 1.3f),
                            normal(rng, rows, s.cols, s.cols + 3)}};
         },
         [](Backend& be, const Args& a) { be.kl_backward(a.t[0], a.t[1], a.t[2]); },
         [=](RefData& r) {
           const double scale = r.t[1].at(0, 0) / (double(rows) * e);
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < e; ++j) {
               float dmu, dls;
               kl_element_grad(r.t[0].f(i, j), r.t[0].f(i, e + j), &dmu, &dls);
               r.t[2].at(i, j) += scale * dmu;
               r.t[2].at(i, e + j) += scale * dls;
             }
         },
         {1e-6, 1e-5}, {1e-6, 1e-5}});
  }

  for (Shape s : {Shape{37, 129, 140}, Shape{300, 2048, 0}, Shape{2100, 2048, 0}, Shape{1, 1, 0}}) {
    const int rows = s.rows, cols = s.cols;
    // Exact zeros of x - v (as the generator's ReLU output against ReLU features gives): the
    // derivative there is sign(0) = 0.
    auto make = [=](std::mt19937& rng) {
      HostTensor x = normal(rng, rows, cols, s.ld), v = normal(rng, rows, cols, cols + 5);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; j += 3) v.at(i, j) = x.at(i, j);
      return CaseData{{x, v, constant(1, 1, -0.8f), normal(rng, rows, cols), normal(rng, rows, cols, cols + 1)}};
    };
    add({"l1_forward", shape(rows, cols), make,
         [](Backend& be, const Args& a) { be.l1_forward(a.t[0], a.t[1], a.t[2]); },
         [=](RefData& r) {
           double sum = 0;
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < cols; ++j) sum += std::fabs(r.t[0].at(i, j) - r.t[1].at(i, j));
           r.t[2].at(0, 0) = sum / rows;
         },
         {1e-6, 1e-6}, {1e-3, 1e-4}});
    if (rows == 2100) continue;
    for (int variant = 0; variant < 3; ++variant) {  // dx and dv, dx only, dv only
      const bool want_dx = variant != 2, want_dv = variant != 1;
      add({"l1_backward", shape(rows, cols) + (want_dx ? " dx" : "") + (want_dv ? " dv" : ""), make,
           [=](Backend& be, const Args& a) {
             be.l1_backward(a.t[0], a.t[1], a.t[2], want_dx ? a.t[3] : Tensor(), want_dv ? a.t[4] : Tensor());
           },
           [=](RefData& r) {
             const double scale = r.t[2].at(0, 0) / rows;
             for (int i = 0; i < rows; ++i)
               for (int j = 0; j < cols; ++j) {
                 const double g = scale * sign_tf(r.t[0].f(i, j) - r.t[1].f(i, j));
                 if (want_dx) r.t[3].at(i, j) += g;
                 if (want_dv) r.t[4].at(i, j) -= g;
               }
           },
           {1e-7, 1e-6}, {1e-7, 1e-6}});
    }
  }

  for (Shape s : {Shape{37, 129, 131}, Shape{96, 1, 0}, Shape{500, 2048, 0}, Shape{2100, 2048, 0},
                  Shape{1, 1, 0}}) {
    const int rows = s.rows, cols = s.cols;
    add({"mean_forward", shape(rows, cols),
         [=](std::mt19937& rng) { return CaseData{{normal(rng, rows, cols, s.ld, 1.f, 0.25f), constant(1, 1, 0.f)}}; },
         [](Backend& be, const Args& a) { be.mean_forward(a.t[0], a.t[1]); },
         [=](RefData& r) {
           double sum = 0;
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < cols; ++j) sum += r.t[0].at(i, j);
           r.t[1].at(0, 0) = sum / (double(rows) * cols);
         },
         {1e-7, 1e-5}, {1e-6, 1e-4}});
    add({"mean_backward", shape(rows, cols),
         [=](std::mt19937& rng) { return CaseData{{constant(1, 1, 2.5f), normal(rng, rows, cols, s.ld)}}; },
         [](Backend& be, const Args& a) { be.mean_backward(a.t[0], a.t[1]); },
         [=](RefData& r) {
           const double g = r.t[0].at(0, 0) / (double(rows) * cols);
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < cols; ++j) r.t[1].at(i, j) += g;
         },
         {1e-7, 1e-6}, {1e-7, 1e-6}});
  }

  for (Shape s : {Shape{37, 129, 0}, Shape{2000, 64, 0}, Shape{4200, 1024, 0}, Shape{1, 3, 0}}) {
    const int rows = s.rows, cols = s.cols;
    // Zero rows: the 1e-12 floor of the norm, whose gradient term vanishes.
    auto make = [=](std::mt19937& rng) {
      HostTensor a = normal(rng, rows, cols, cols + 3), b = normal(rng, rows, cols, cols + 9);
      if (rows > 7) {
        for (int j = 0; j < cols; ++j) a.at(5, j) = 0.f;
        for (int j = 0; j < cols; ++j) b.at(7, j) = 0.f;
      }
      return CaseData{{a, b, constant(1, 1, 0.9f), normal(rng, rows, cols), normal(rng, rows, cols, cols + 1)}};
    };
    struct Row {
      double ia, ib, cos, ka, kb;
    };
    auto row = [=](const RefData& r, int i) {
      double aa = 0, bb = 0, ab = 0;
      for (int j = 0; j < cols; ++j) {
        aa += r.t[0].at(i, j) * r.t[0].at(i, j);
        bb += r.t[1].at(i, j) * r.t[1].at(i, j);
        ab += r.t[0].at(i, j) * r.t[1].at(i, j);
      }
      Row w;
      w.ia = 1 / std::sqrt(std::max(aa, 1e-12));
      w.ib = 1 / std::sqrt(std::max(bb, 1e-12));
      w.cos = ab * w.ia * w.ib;
      w.ka = aa <= 1e-12 ? 0 : w.cos * w.ia;
      w.kb = bb <= 1e-12 ? 0 : w.cos * w.ib;
      return w;
    };
    add({"cosine_mean_forward", shape(rows, cols), make,
         [](Backend& be, const Args& a) { be.cosine_mean_forward(a.t[0], a.t[1], a.t[2]); },
         [=](RefData& r) {
           double sum = 0;
           for (int i = 0; i < rows; ++i) sum += row(r, i).cos;
           r.t[2].at(0, 0) = sum / rows;
         },
         {1e-6, 1e-5}, {1e-6, 1e-4}});
    if (rows == 4200) continue;
    for (bool with_db : {true, false})
      add({"cosine_mean_backward", shape(rows, cols) + (with_db ? " da db" : " da"), make,
           [=](Backend& be, const Args& a) {
             be.cosine_mean_backward(a.t[0], a.t[1], a.t[2], a.t[3], with_db ? a.t[4] : Tensor());
           },
           [=](RefData& r) {
             const double g = r.t[2].at(0, 0) / rows;
             for (int i = 0; i < rows; ++i) {
               const Row w = row(r, i);
               for (int j = 0; j < cols; ++j) {
                 const double av = r.t[0].at(i, j), bv = r.t[1].at(i, j);
                 r.t[3].at(i, j) += g * w.ia * (bv * w.ib - w.ka * av);
                 if (with_db) r.t[4].at(i, j) += g * w.ib * (av * w.ia - w.kb * bv);
               }
             }
           },
           {1e-6, 1e-5}, {1e-6, 1e-5}});
  }

  for (Shape s : {Shape{37, 129, 140}, Shape{1, 1, 0}, Shape{1, 333, 0}}) {
    const int rows = s.rows, cols = s.cols;
    add({"softplus_forward", shape(rows, cols),
         [=](std::mt19937& rng) { return CaseData{{normal(rng, rows, cols, s.ld, 2.f), normal(rng, rows, cols, cols + 4)}}; },
         [](Backend& be, const Args& a) { be.softplus_forward(a.t[0], a.t[1]); },
         [=](RefData& r) {
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < cols; ++j) r.t[1].at(i, j) = std::log(1 + std::exp(r.t[0].at(i, j)));
         },
         {1e-6, 1e-6}, {1e-6, 1e-5}});
    add({"softplus_backward", shape(rows, cols),
         [=](std::mt19937& rng) {
           return CaseData{{normal(rng, rows, cols, s.ld, 2.f), normal(rng, rows, cols), normal(rng, rows, cols, cols + 2)}};
         },
         [](Backend& be, const Args& a) { be.softplus_backward(a.t[0], a.t[1], a.t[2]); },
         [=](RefData& r) {
           for (int i = 0; i < rows; ++i)
             for (int j = 0; j < cols; ++j)
               r.t[2].at(i, j) += r.t[1].at(i, j) / (1 + std::exp(-r.t[0].at(i, j)));
         },
         {1e-6, 1e-6}, {1e-6, 1e-5}});
  }

  // -- scalar combinations: a term twice (accumulates twice), a term without a gradient
  add({"combine_forward", "3 terms + constant",
       [](std::mt19937&) {
         return CaseData{{constant(1, 1, 1.5f), constant(1, 1, -2.25f), constant(1, 1, 0.125f), constant(1, 1, 0.f)}};
       },
       [](Backend& be, const Args& a) {
         ScalarTerms t;
         t.n = 3;
         const float w[] = {-1.f, 2.f, 0.5f};
         for (int i = 0; i < 3; ++i) {
           t.value[i] = a.t[i].data;
           t.weight[i] = w[i];
         }
         t.constant = 2.f;
         be.combine_forward(t, a.t[3]);
       },
       [](RefData& r) { r.t[3].at(0, 0) = -1.0 * 1.5 + 2.0 * -2.25 + 0.5 * 0.125 + 2.0; },
       {1e-7, 1e-6}, {1e-7, 1e-6}});
  add({"combine_backward", "4 terms, one repeated, one without a gradient",
       [](std::mt19937&) { return CaseData{{constant(1, 1, 0.75f), constant(1, 1, 0.1f), constant(1, 1, -0.2f)}}; },
       [](Backend& be, const Args& a) {
         ScalarTermGrads g;
         g.n = 4;
         g.grad[0] = a.t[1].data;
         g.grad[1] = nullptr;
         g.grad[2] = a.t[2].data;
         g.grad[3] = a.t[1].data;
         const float w[] = {1.f, 3.f, 2.f, -0.5f};
         for (int i = 0; i < 4; ++i) g.weight[i] = w[i];
         be.combine_backward(g, a.t[0]);
       },
       [](RefData& r) {
         const double d = r.t[0].at(0, 0);
         r.t[1].at(0, 0) += (1.0 - 0.5) * d;
         r.t[2].at(0, 0) += 2.0 * d;
       },
       {1e-7, 1e-6}, {1e-7, 1e-6}});

  // -- optimizers over 10007 parameters (not a multiple of 4: the vector body and the scalar
  // tail), five steps; misaligned: the element-by-element path.
  constexpr int kSteps = 5;
  for (bool misaligned : {false, true})
    for (float clip : {0.f, 0.01f}) {
      const int n = 10007, off = misaligned ? 1 : 0;
      auto flat = [=](const Tensor& t) { return Tensor(t.data + off, 1, n, t.device); };
      add({"rmsprop_update", std::to_string(n) + (clip > 0 ? " + clip" : "") + (misaligned ? ", misaligned" : ""),
           [=](std::mt19937& rng) {
             CaseData d{{normal(rng, 1, n + off, 0, 0.02f), constant(1, n + off, 1.f)}};
             for (int s = 0; s < kSteps; ++s) d.t.push_back(normal(rng, 1, n + off, 0, 0.5f));
             return d;
           },
           [=](Backend& be, const Args& a) {
             RmsPropHyper h{2e-4f};
             h.clip = clip;
             for (int s = 0; s < kSteps; ++s) be.rmsprop_update(flat(a.t[0]), flat(a.t[2 + s]), flat(a.t[1]), h);
           },
           [=](RefData& r) {
             RmsPropHyper h{2e-4f};
             h.clip = clip;
             for (int s = 0; s < kSteps; ++s)
               for (int i = off; i < n + off; ++i) {
                 float p = r.t[0].f(0, i), ms = r.t[1].f(0, i);
                 rmsprop_tf1_update(&p, r.t[2 + s].f(0, i), &ms, h);
                 r.t[0].at(0, i) = p;
                 r.t[1].at(0, i) = ms;
               }
           },
           {1e-7, 1e-5}, {1e-7, 1e-5}});
    }
  // -- RMSProp from a weight gradient's factors: the unfused path (small) and the CPU's blocked
  // one (a short last row block and column panel; a weight with fewer rows than a block and
  // fewer steps of k than lines to prefetch), x a strided view, two steps. What `grads` holds
  // afterwards is unspecified: each run zeroes it.
  struct ProductShape {
    int m, n, k, ld_x;
    constexpr size_t params() const { return size_t(m) * n; }
  };
  static constexpr ProductShape product_shapes[] = {{37, 29, 5, 40}, {301, 3500, 64, 310}, {3, 350000, 4, 0}};
  static_assert(product_shapes[0].params() < kCpuBlockedUpdateMinParams &&
                    product_shapes[1].params() >= kCpuBlockedUpdateMinParams &&
                    product_shapes[2].params() >= kCpuBlockedUpdateMinParams,
                "the first shape takes the CPU's unfused path, the other two its blocked one");
  for (ProductShape sh : product_shapes)
    for (float clip : {0.f, 0.01f}) {
      constexpr int kProductSteps = 2;
      add({"weight_grad_rmsprop_update",
           std::to_string(sh.k) + "x" + std::to_string(sh.m) + " (ld " + std::to_string(std::max(sh.ld_x, sh.m)) +
               ")^T * " + std::to_string(sh.k) + "x" + std::to_string(sh.n) + (clip > 0 ? " + clip" : ""),
           [=](std::mt19937& rng) {
             CaseData d{{normal(rng, sh.k, sh.m, sh.ld_x), normal(rng, sh.m, sh.n, 0, 0.02f),
                         constant(sh.m, sh.n, 0.f), constant(sh.m, sh.n, 1.f)}};
             for (int s = 0; s < kProductSteps; ++s) d.t.push_back(normal(rng, sh.k, sh.n, 0, 0.3f));
             return d;
           },
           [=](Backend& be, const Args& a) {
             RmsPropHyper h{2e-4f};
             h.clip = clip;
             for (int s = 0; s < kProductSteps; ++s)
               be.weight_grad_rmsprop_update(a.t[0], a.t[4 + s], a.t[1], a.t[2], a.t[3], h);
             be.fill(a.t[2], 0.f);
           },
           [=](RefData& r) {
             RmsPropHyper h{2e-4f};
             h.clip = clip;
             RefTensor g = r.t[2];
             for (int s = 0; s < kProductSteps; ++s) {
               ref_gemm(true, false, 1.0, r.t[0], r.t[4 + s], 0.0, g, nullptr, Act::None);
               for (int i = 0; i < sh.m; ++i)
                 for (int j = 0; j < sh.n; ++j) {
                   float p = r.t[1].f(i, j), ms = r.t[3].f(i, j);
                   rmsprop_tf1_update(&p, g.f(i, j), &ms, h);
                   r.t[1].at(i, j) = p;
                   r.t[3].at(i, j) = ms;
                 }
             }
           },
           {1e-6, 1e-5}, {1e-6, 1e-5}});
    }
  add({"adam_update", "10007, five steps",
       [](std::mt19937& rng) {
         HostTensor powers = host_tensor(1, 2);
         powers.data = {0.5f, 0.999f};
         CaseData d{{normal(rng, 1, 10007, 0, 0.02f), constant(1, 10007, 0.f), constant(1, 10007, 0.f), powers}};
         for (int s = 0; s < kSteps; ++s) d.t.push_back(normal(rng, 1, 10007, 0, 0.5f));
         return d;
       },
       [](Backend& be, const Args& a) {
         for (int s = 0; s < kSteps; ++s)
           be.adam_update(a.t[0], a.t[4 + s], a.t[1], a.t[2], a.t[3], AdamHyper{0.002f});
       },
       [](RefData& r) {
         const AdamHyper h{0.002f};
         for (int s = 0; s < kSteps; ++s) {
           const float lr_t = adam_tf1_lr_t(h, r.t[3].f(0, 0), r.t[3].f(0, 1));
           for (int i = 0; i < 10007; ++i) {
             float p = r.t[0].f(0, i), m = r.t[1].f(0, i), v = r.t[2].f(0, i);
             adam_tf1_update(&p, r.t[4 + s].f(0, i), &m, &v, lr_t, h);
             r.t[0].at(0, i) = p;
             r.t[1].at(0, i) = m;
             r.t[2].at(0, i) = v;
           }
           r.t[3].at(0, 0) = r.t[3].f(0, 0) * h.beta1;  // float products, as TF keeps them
           r.t[3].at(0, 1) = r.t[3].f(0, 1) * h.beta2;
         }
       },
       {1e-7, 1e-5}, {1e-9, 1e-5}});
  add({"adam_update", "10007, powers left as they are",
       [](std::mt19937& rng) {
         HostTensor powers = host_tensor(1, 2);
         powers.data = {0.25f, 0.998f};
         return CaseData{{normal(rng, 1, 10007, 0, 0.02f), normal(rng, 1, 10007, 0, 0.1f),
                          constant(1, 10007, 0.5f), powers, normal(rng, 1, 10007, 0, 0.5f)}};
       },
       [](Backend& be, const Args& a) {
         AdamHyper h{0.002f};
         h.advance_beta_powers = false;
         be.adam_update(a.t[0], a.t[4], a.t[1], a.t[2], a.t[3], h);
       },
       [](RefData& r) {
         const AdamHyper h{0.002f};
         const float lr_t = adam_tf1_lr_t(h, r.t[3].f(0, 0), r.t[3].f(0, 1));
         for (int i = 0; i < 10007; ++i) {
           float p = r.t[0].f(0, i), m = r.t[1].f(0, i), v = r.t[2].f(0, i);
           adam_tf1_update(&p, r.t[4].f(0, i), &m, &v, lr_t, h);
           r.t[0].at(0, i) = p;
           r.t[1].at(0, i) = m;
           r.t[2].at(0, i) = v;
         }
       },
       {1e-7, 1e-5}, {1e-9, 1e-5}});
  // -- Adam from a weight gradient's factors, on the shapes of the RMSProp cases above: a step
  // that leaves the beta powers, then one that advances them, as a group's step does.
  for (ProductShape sh : product_shapes) {
    add({"weight_grad_adam_update",
         std::to_string(sh.k) + "x" + std::to_string(sh.m) + " (ld " + std::to_string(std::max(sh.ld_x, sh.m)) +
             ")^T * " + std::to_string(sh.k) + "x" + std::to_string(sh.n),
         [=](std::mt19937& rng) {
           HostTensor powers = host_tensor(1, 2);
           powers.data = {0.25f, 0.998f};
           return CaseData{{normal(rng, sh.k, sh.m, sh.ld_x), normal(rng, sh.m, sh.n, 0, 0.02f),
                            constant(sh.m, sh.n, 0.f), normal(rng, sh.m, sh.n, 0, 0.1f),
                            constant(sh.m, sh.n, 0.5f), powers, normal(rng, sh.k, sh.n, 0, 0.3f),
                            normal(rng, sh.k, sh.n, 0, 0.3f)}};
         },
         [=](Backend& be, const Args& a) {
           for (int s = 0; s < 2; ++s) {
             AdamHyper h{0.002f};
             h.advance_beta_powers = s == 1;
             be.weight_grad_adam_update(a.t[0], a.t[6 + s], a.t[1], a.t[2], a.t[3], a.t[4], a.t[5], h);
           }
           be.fill(a.t[2], 0.f);
         },
         [=](RefData& r) {
           const AdamHyper h{0.002f};
           RefTensor g = r.t[2];
           for (int s = 0; s < 2; ++s) {
             const float lr_t = adam_tf1_lr_t(h, r.t[5].f(0, 0), r.t[5].f(0, 1));
             ref_gemm(true, false, 1.0, r.t[0], r.t[6 + s], 0.0, g, nullptr, Act::None);
             for (int i = 0; i < sh.m; ++i)
               for (int j = 0; j < sh.n; ++j) {
                 float p = r.t[1].f(i, j), m = r.t[3].f(i, j), v = r.t[4].f(i, j);
                 adam_tf1_update(&p, g.f(i, j), &m, &v, lr_t, h);
                 r.t[1].at(i, j) = p;
                 r.t[3].at(i, j) = m;
                 r.t[4].at(i, j) = v;
               }
           }
           r.t[5].at(0, 0) = r.t[5].f(0, 0) * h.beta1;
           r.t[5].at(0, 1) = r.t[5].f(0, 1) * h.beta2;
         },
         // m follows the gradient (|g| up to ~10, a float sum of k products) at half weight.
         {1e-5, 1e-5}, {1e-5, 1e-5}});
  }

  // -- counters and stored scalars
  add({"store_scalar", "by counter and by slot, after increment_counter x3",
       [](std::mt19937&) {
         CaseData d{{constant(1, 16, -1.f), constant(1, 1, 3.5f)}};
         d.i64 = {{0}};
         return d;
       },
       [](Backend& be, const Args& a) {
         for (int i = 0; i < 3; ++i) be.increment_counter(a.i64[0]);
         be.store_scalar(a.t[1], a.t[0], 1, a.i64[0], 2);  // slot 1 + 3 * 2
         be.store_scalar(a.t[1], a.t[0], 15, nullptr, 2);
       },
       [](RefData& r) {
         r.i64[0][0] = 3;
         r.t[0].at(0, 7) = 3.5;
         r.t[0].at(0, 15) = 3.5;
       },
       {0, 0}, {0, 0}});

  // -- top-k cosine retrieval (host outputs). Gallery rows are copies of a few integer
  // prototypes, so equal rows give exactly equal scores on any backend (ties, broken by the
  // lower index), and distinct prototypes are kept 1e-4 apart in cosine for every query, so
  // float rounding never reorders them; query 0 is all zeros (every score ties at 0). The
  // expected lists follow from double-precision cosines.
  struct TopkShape {
    int gallery_rows, query_rows, n_proto, ld_gallery, ld_queries, k;
    int64_t offset;
    const char* note;
  };
  const TopkShape topk_shapes[] = {
      {9000, 40, 40, 16, 16, 1, 1000000, "three gallery tiles"},
      {9000, 40, 40, 16, 16, 50, 1000000, "three gallery tiles, ties across them"},
      {9000, 40, 40, 16, 16, 1024, 1000000, "three gallery tiles, the largest k"},
      {37, 9, 5, 20, 19, 37, 5, "one small tile, strided, k = rows"},
      {37, 9, 5, 20, 19, 3, 5, "one small tile, strided"},
      {37, 9, 5, 20, 19, 40, 5, "one small tile, strided, k > rows: empty slots"},
      {300, 2100, 30, 16, 24, 50, 0, "more queries than one query tile"},
  };
  for (const TopkShape& sh : topk_shapes)
    add({"topk_cosine",
         shape(sh.query_rows, kTopkDim) + " queries, " + shape(sh.gallery_rows, kTopkDim) +
             " gallery, k " + std::to_string(sh.k) + ", " + sh.note,
         [=](std::mt19937& rng) { return topk_case_data(rng, sh.gallery_rows, sh.query_rows,
                                                        sh.n_proto, sh.ld_gallery, sh.ld_queries,
                                                        sh.k); },
         [=](Backend& be, const Args& a) {
           be.topk_cosine(a.t[0], a.t[1], sh.k, sh.offset, a.host_i64[0], a.host_f32[0]);
         },
         [=](RefData& r) { ref_topk_cosine(r, sh.k, sh.offset); },
         {1e-5, 0}, {1e-5, 0}});
  return cases;
}

const std::vector<OpCase>& all_cases() {
  static const std::vector<OpCase> cases = op_cases();
  return cases;
}

// The backends present: the CPU always, CUDA when a device is usable.
struct Present {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Backend> cuda;
  Present() {
    if (cuda_unavailable_reason().empty()) cuda = make_cuda_backend();
  }
};
Present& present() {
  static Present p;
  return p;
}

class BackendOps : public ::testing::TestWithParam<size_t> {};

TEST_P(BackendOps, MatchesTheReferenceOnEveryBackend) {
  const OpCase& c = all_cases()[GetParam()];
  std::mt19937 rng(1000u + static_cast<uint32_t>(GetParam()));
  const CaseData data = c.make(rng);
  const std::string what = c.op + " (" + c.what + ")";

  Results cpu;
  {
    Placement on_cpu(*present().cpu, data);
    c.run(*present().cpu, on_cpu.args);
    cpu = on_cpu.fetch();
  }
  expect_results(reference_results(c, data), cpu, c.cpu, what + ", cpu vs float64 reference");

  if (present().cuda) {
    Placement on_gpu(*present().cuda, data);
    c.run(*present().cuda, on_gpu.args);
    expect_results(cpu, on_gpu.fetch(), c.cuda, what + ", cuda vs cpu");
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  return all_cases()[info.param].op + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Table, BackendOps, ::testing::Range<size_t>(0, all_cases().size()), case_name);

// ---- the CPU backend's loop levels ------------------------------------------------------------
// The CPU backend's loops are compiled once per ISA level (backend/cpu/cpu_isa.h). Every level
// this CPU runs must leave what the default level leaves: bitwise between avx2 and avx512
// (both contract a * b + c to an FMA alike; the vector width does not change an element's
// arithmetic, and reductions keep their order); between baseline (no FMA) and the others within
// twice the case's CPU tolerance, and baseline also within that tolerance of the float64
// reference, as the default level is above.
Backend& cpu_at_level(CpuIsa isa) {
  static std::unique_ptr<Backend> made[std::size(kCpuIsas)];
  std::unique_ptr<Backend>& be = made[static_cast<size_t>(isa)];
  if (!be) be = make_cpu_backend(isa);
  return *be;
}

void expect_bitwise(const Results& want, const Results& got, const std::string& what) {
  ASSERT_EQ(want.t.size(), got.t.size());
  for (size_t i = 0; i < want.t.size(); ++i) {
    ASSERT_EQ(want.t[i].size(), got.t[i].size());
    if (std::memcmp(want.t[i].data(), got.t[i].data(), want.t[i].size() * sizeof(float)) != 0) {
      EXPECT_TRUE(all_close(want.t[i], got.t[i], 0, 0, what + ", tensor " + std::to_string(i)));
      ADD_FAILURE() << what << ", tensor " << i << ": not bitwise identical";
    }
  }
  EXPECT_EQ(want.i64, got.i64) << what << ": int64 arrays";
  EXPECT_EQ(want.i32, got.i32) << what << ": int32 arrays";
}

class CpuIsaLevels : public ::testing::TestWithParam<size_t> {};

TEST_P(CpuIsaLevels, MatchTheDefaultLevel) {
  const OpCase& c = all_cases()[GetParam()];
  std::mt19937 rng(1000u + static_cast<uint32_t>(GetParam()));
  const CaseData data = c.make(rng);
  const std::string what = c.op + " (" + c.what + ")";
  auto run_on = [&](Backend& be) {
    Placement placed(be, data);
    c.run(be, placed.args);
    return placed.fetch();
  };
  const CpuIsa default_isa = cpu_isa_selected();
  const Results want = run_on(*present().cpu);
  int compared = 0;
  for (CpuIsa isa : kCpuIsas) {
    if (isa == default_isa || !cpu_isa_supported(isa)) continue;
    ++compared;
    const Results got = run_on(cpu_at_level(isa));
    const std::string vs = what + ", loops " + cpu_isa_name(isa) + " vs " + cpu_isa_name(default_isa);
    if (isa != CpuIsa::Baseline && default_isa != CpuIsa::Baseline) {
      expect_bitwise(want, got, vs);
    } else {
      expect_results(want, got, Tol{2 * c.cpu.abs, 2 * c.cpu.rel}, vs);
      if (isa == CpuIsa::Baseline)
        expect_results(reference_results(c, data), got, c.cpu, what + ", loops baseline vs float64 reference");
    }
  }
  if (compared == 0) GTEST_SKIP() << "this CPU runs only the " << cpu_isa_name(default_isa) << " loops";
}

INSTANTIATE_TEST_SUITE_P(Table, CpuIsaLevels, ::testing::Range<size_t>(0, all_cases().size()), case_name);

TEST(BackendOpsCoverage, EveryOpHasACase) {
  const char* ops[] = {"fill", "copy", "axpy", "gather_rows", "gemm", "gemm_bias_act",
                       "bias_act_forward", "bias_act_backward", "fill_normal", "fill_truncated_normal",
                       "reparam_forward", "reparam_backward", "kl_forward", "kl_backward",
                       "l1_forward", "l1_backward", "mean_forward", "mean_backward",
                       "cosine_mean_forward", "cosine_mean_backward", "softplus_forward",
                       "softplus_backward", "combine_forward", "combine_backward",
                       "rmsprop_update", "weight_grad_rmsprop_update", "adam_update", "weight_grad_adam_update",
                       "store_scalar", "topk_cosine"};
  for (const char* op : ops)
    EXPECT_TRUE(std::any_of(all_cases().begin(), all_cases().end(),
                            [&](const OpCase& c) { return c.op == op; }))
        << "no table case for " << op;
}

TEST(BackendOpsCoverage, CudaBackendTakesPart) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty())
    GTEST_SKIP() << "the op table ran on the CPU backend only: " << reason;
  EXPECT_TRUE(present().cuda != nullptr);
}

// ---- the table of bad calls ------------------------------------------------------------------

// A backend whose implementations only note that they were reached: a bad call that gets
// past Backend's checks shows up here on any machine, GPU or not. Memory is host memory.
class ReachedImplementation : public std::exception {};

class InertBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string description() const override { return "inert test double"; }
  int reached = 0;

 protected:
  void* do_allocate(size_t bytes) override { return std::calloc(1, std::max<size_t>(bytes, 4)); }
  void do_deallocate(void* p) override { std::free(p); }
  void do_upload_bytes(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  void do_synchronize() override {}

#define ZS_REACHED(sig) \
  sig override { ++reached; throw ReachedImplementation(); }
  ZS_REACHED(void do_upload(Tensor, const float*))
  ZS_REACHED(void do_download(const Tensor&, float*))
  ZS_REACHED(void do_download_bytes(void*, const void*, size_t))
  ZS_REACHED(void do_fill(Tensor, float))
  ZS_REACHED(void do_copy(Tensor, const Tensor&))
  ZS_REACHED(void do_axpy(Tensor, float, const Tensor&))
  ZS_REACHED(void do_gather_rows(Tensor, const Tensor&, IndexSpan))
  ZS_REACHED(void do_gemm(bool, bool, float, const Tensor&, const Tensor&, float, Tensor))
  ZS_REACHED(void do_gemm_bias_act(bool, bool, const Tensor&, const Tensor&, float, Tensor, const Tensor&, Act))
  ZS_REACHED(void do_bias_act_forward(Tensor, const Tensor&, Act))
  ZS_REACHED(void do_bias_act_backward(const Tensor&, const Tensor&, Tensor, Tensor, Act, GradWrite, GradWrite))
  ZS_REACHED(void do_fill_normal(Tensor, NoiseStream))
  ZS_REACHED(void do_fill_truncated_normal(Tensor, NoiseStream))
  ZS_REACHED(void do_reparam_forward(const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_reparam_backward(const Tensor&, const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_kl_forward(const Tensor&, Tensor))
  ZS_REACHED(void do_kl_backward(const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_l1_forward(const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_l1_backward(const Tensor&, const Tensor&, const Tensor&, Tensor, Tensor))
  ZS_REACHED(void do_mean_forward(const Tensor&, Tensor))
  ZS_REACHED(void do_mean_backward(const Tensor&, Tensor))
  ZS_REACHED(void do_cosine_mean_forward(const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_cosine_mean_backward(const Tensor&, const Tensor&, const Tensor&, Tensor, Tensor))
  ZS_REACHED(void do_softplus_forward(const Tensor&, Tensor))
  ZS_REACHED(void do_softplus_backward(const Tensor&, const Tensor&, Tensor))
  ZS_REACHED(void do_combine_forward(const ScalarTerms&, Tensor))
  ZS_REACHED(void do_combine_backward(const ScalarTermGrads&, const Tensor&))
  ZS_REACHED(void do_rmsprop_update(Tensor, const Tensor&, Tensor, const RmsPropHyper&))
  ZS_REACHED(void do_weight_grad_rmsprop_update(const Tensor&, const Tensor&, Tensor, Tensor, Tensor,
                                                const RmsPropHyper&))
  ZS_REACHED(void do_adam_update(Tensor, const Tensor&, Tensor, Tensor, Tensor, const AdamHyper&))
  ZS_REACHED(void do_weight_grad_adam_update(const Tensor&, const Tensor&, Tensor, Tensor, Tensor, Tensor,
                                             Tensor, const AdamHyper&))
  ZS_REACHED(void do_increment_counter(int64_t*))
  ZS_REACHED(void do_store_scalar(const Tensor&, Tensor, int64_t, const int64_t*, int64_t))
  ZS_REACHED(void do_topk_cosine(const Tensor&, const Tensor&, int, int64_t, int64_t*, float*))
#undef ZS_REACHED
};

// Tensors for bad calls on one backend: zero-filled, with room to spare (a call whose check
// is missing computes on them instead of running past their end).
class Scratch {
 public:
  explicit Scratch(Backend& be) : be_(be) {}
  ~Scratch() {
    for (void* p : owned_) be_.deallocate(p);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Tensor t(int rows, int cols, int ld = 0) {
    ld = std::max(ld, cols);
    const size_t n = 2 * static_cast<size_t>(std::max(rows, 1)) * std::max(ld, 1) + 4096;
    void* p = be_.allocate(n * sizeof(float));
    owned_.push_back(p);
    const std::vector<float> zeros(n, 0.f);
    be_.upload_bytes(p, zeros.data(), n * sizeof(float));
    return Tensor(static_cast<float*>(p), rows, cols, ld, be_.device());
  }
  Tensor scalar() { return t(1, 1); }
  // The same memory, said to be on the other device.
  static Tensor elsewhere(Tensor x) {
    x.device = x.device == Device::CPU ? Device::CUDA : Device::CPU;
    return x;
  }
  int64_t* counter() {
    void* p = be_.allocate(64);
    owned_.push_back(p);
    const int64_t zeros[8] = {};
    be_.upload_bytes(p, zeros, sizeof zeros);
    return static_cast<int64_t*>(p);
  }
  int32_t* indices(int n) {
    void* p = be_.allocate(sizeof(int32_t) * std::max(n, 1));
    owned_.push_back(p);
    const std::vector<int32_t> zeros(std::max(n, 1), 0);
    be_.upload_bytes(p, zeros.data(), sizeof(int32_t) * zeros.size());
    return static_cast<int32_t*>(p);
  }

 private:
  Backend& be_;
  std::vector<void*> owned_;
};

struct BadCall {
  std::string op;      // the op the message must name
  std::string detail;  // also in the message ("" for none): a shape, a value
  std::string why;
  std::function<void(Backend&, Scratch&)> call;
};

std::vector<BadCall> bad_calls() {
  using S = Scratch;
  std::vector<int64_t> index(64);
  std::vector<float> score(64);
  return {
      {"upload", "", "dst on the other device",
       [](Backend& be, S& s) { std::vector<float> h(6); be.upload(S::elsewhere(s.t(2, 3)), h.data()); }},
      {"upload", "2x3", "no host data", [](Backend& be, S& s) { be.upload(s.t(2, 3), nullptr); }},
      {"download", "", "src on the other device",
       [](Backend& be, S& s) { std::vector<float> h(6); be.download(S::elsewhere(s.t(2, 3)), h.data()); }},
      {"fill", "", "t on the other device", [](Backend& be, S& s) { be.fill(S::elsewhere(s.t(3, 4)), 1.f); }},
      {"fill", "3x4", "no data", [](Backend& be, S&) { be.fill(Tensor(nullptr, 3, 4, be.device()), 1.f); }},
      {"fill", "row stride", "ld < cols", [](Backend& be, S& s) { Tensor t = s.t(3, 4); t.ld = 2; be.fill(t, 1.f); }},
      {"copy", "3x5", "shapes differ", [](Backend& be, S& s) { be.copy(s.t(3, 4), s.t(3, 5)); }},
      {"copy", "", "src on the other device", [](Backend& be, S& s) { be.copy(s.t(3, 4), S::elsewhere(s.t(3, 4))); }},
      {"axpy", "4x4", "shapes differ", [](Backend& be, S& s) { be.axpy(s.t(3, 4), 1.f, s.t(4, 4)); }},
      {"gather_rows", "5x8", "fewer indices than dst rows",
       [](Backend& be, S& s) { be.gather_rows(s.t(5, 8), s.t(10, 8), IndexSpan{s.indices(4), 4}); }},
      {"gather_rows", "10x9", "src width differs",
       [](Backend& be, S& s) { be.gather_rows(s.t(4, 8), s.t(10, 9), IndexSpan{s.indices(4), 4}); }},
      {"gather_rows", "", "no indices", [](Backend& be, S& s) { be.gather_rows(s.t(4, 8), s.t(10, 8), IndexSpan{nullptr, 4}); }},
      {"gemm", "op(A) 3x4", "inner dimensions differ",
       [](Backend& be, S& s) { be.gemm(false, false, 1.f, s.t(3, 4), s.t(5, 6), 0.f, s.t(3, 6)); }},
      {"gemm", "op(A) 4x3", "A transposed does not fit",
       [](Backend& be, S& s) { be.gemm(true, false, 1.f, s.t(3, 4), s.t(4, 6), 0.f, s.t(3, 6)); }},
      {"gemm", "op(B) 6x4", "B transposed does not fit",
       [](Backend& be, S& s) { be.gemm(false, true, 1.f, s.t(3, 4), s.t(4, 6), 0.f, s.t(3, 6)); }},
      {"gemm", "C 3x7", "both transposed, C does not fit",
       [](Backend& be, S& s) { be.gemm(true, true, 1.f, s.t(4, 3), s.t(6, 4), 0.f, s.t(3, 7)); }},
      {"gemm", "", "A on the other device",
       [](Backend& be, S& s) { be.gemm(false, false, 1.f, S::elsewhere(s.t(3, 4)), s.t(4, 6), 0.f, s.t(3, 6)); }},
      {"gemm_bias_act", "1x5", "bias narrower than C",
       [](Backend& be, S& s) { be.gemm_bias_act(false, false, s.t(3, 4), s.t(4, 6), 0.f, s.t(3, 6), s.t(1, 5), Act::Relu); }},
      {"gemm_bias_act", "op(B)", "shapes do not fit",
       [](Backend& be, S& s) { be.gemm_bias_act(false, false, s.t(3, 4), s.t(5, 6), 0.f, s.t(3, 6), s.t(1, 6), Act::Relu); }},
      {"bias_act_forward", "2x6", "bias of two rows",
       [](Backend& be, S& s) { be.bias_act_forward(s.t(3, 6), s.t(2, 6), Act::None); }},
      {"bias_act_forward", "", "y on the other device",
       [](Backend& be, S& s) { be.bias_act_forward(S::elsewhere(s.t(3, 6)), s.t(1, 6), Act::None); }},
      {"bias_act_backward", "3x5", "dy shape",
       [](Backend& be, S& s) { be.bias_act_backward(s.t(3, 6), s.t(3, 5), s.t(3, 6), s.t(1, 6), Act::Relu); }},
      {"bias_act_backward", "4x6", "d_pre shape",
       [](Backend& be, S& s) { be.bias_act_backward(s.t(3, 6), s.t(3, 6), s.t(4, 6), Tensor(), Act::Relu); }},
      {"bias_act_backward", "1x7", "d_bias shape",
       [](Backend& be, S& s) { be.bias_act_backward(s.t(3, 6), s.t(3, 6), Tensor(), s.t(1, 7), Act::Relu); }},
      {"fill_normal", "", "t on the other device",
       [](Backend& be, S& s) { be.fill_normal(S::elsewhere(s.t(3, 4)), NoiseStream{1}); }},
      {"fill_truncated_normal", "", "t on the other device",
       [](Backend& be, S& s) { be.fill_truncated_normal(S::elsewhere(s.t(3, 4)), NoiseStream{1}); }},
      {"reparam_forward", "h 4x9", "h not twice c's width",
       [](Backend& be, S& s) { be.reparam_forward(s.t(4, 9), s.t(4, 4), s.t(4, 4)); }},
      {"reparam_forward", "eps 4x3", "eps shape",
       [](Backend& be, S& s) { be.reparam_forward(s.t(4, 8), s.t(4, 3), s.t(4, 4)); }},
      {"reparam_backward", "eps 5x4", "eps shape (checked even without dh)",
       [](Backend& be, S& s) { be.reparam_backward(s.t(4, 8), s.t(5, 4), s.t(4, 4), Tensor()); }},
      {"reparam_backward", "4x6", "dh shape",
       [](Backend& be, S& s) { be.reparam_backward(s.t(4, 8), s.t(4, 4), s.t(4, 4), s.t(4, 6)); }},
      {"kl_forward", "odd width", "h of odd width", [](Backend& be, S& s) { be.kl_forward(s.t(4, 7), s.scalar()); }},
      {"kl_forward", "1x2", "out not 1x1", [](Backend& be, S& s) { be.kl_forward(s.t(4, 8), s.t(1, 2)); }},
      {"kl_forward", "0x0", "no output scalar", [](Backend& be, S& s) { be.kl_forward(s.t(4, 8), Tensor()); }},
      {"kl_backward", "2x1", "d_out not 1x1", [](Backend& be, S& s) { be.kl_backward(s.t(4, 8), s.t(2, 1), s.t(4, 8)); }},
      {"kl_backward", "4x6", "dh shape", [](Backend& be, S& s) { be.kl_backward(s.t(4, 8), s.scalar(), s.t(4, 6)); }},
      {"l1_forward", "4x6", "x and v differ", [](Backend& be, S& s) { be.l1_forward(s.t(4, 5), s.t(4, 6), s.scalar()); }},
      {"l1_forward", "0x0", "no output scalar", [](Backend& be, S& s) { be.l1_forward(s.t(4, 5), s.t(4, 5), Tensor()); }},
      {"l1_backward", "3x5", "dv shape",
       [](Backend& be, S& s) { be.l1_backward(s.t(4, 5), s.t(4, 5), s.scalar(), s.t(4, 5), s.t(3, 5)); }},
      {"l1_backward", "1x3", "d_out not 1x1",
       [](Backend& be, S& s) { be.l1_backward(s.t(4, 5), s.t(4, 5), s.t(1, 3), s.t(4, 5), Tensor()); }},
      {"mean_forward", "0x0", "no output scalar", [](Backend& be, S& s) { be.mean_forward(s.t(4, 5), Tensor()); }},
      {"mean_forward", "", "out on the other device",
       [](Backend& be, S& s) { be.mean_forward(s.t(4, 5), S::elsewhere(s.scalar())); }},
      {"mean_backward", "1x2", "d_out not 1x1", [](Backend& be, S& s) { be.mean_backward(s.t(1, 2), s.t(4, 5)); }},
      {"cosine_mean_forward", "4x6", "a and b differ",
       [](Backend& be, S& s) { be.cosine_mean_forward(s.t(4, 5), s.t(4, 6), s.scalar()); }},
      {"cosine_mean_forward", "2x2", "out not 1x1",
       [](Backend& be, S& s) { be.cosine_mean_forward(s.t(4, 5), s.t(4, 5), s.t(2, 2)); }},
      {"cosine_mean_backward", "4x4", "db shape",
       [](Backend& be, S& s) { be.cosine_mean_backward(s.t(4, 5), s.t(4, 5), s.scalar(), Tensor(), s.t(4, 4)); }},
      {"softplus_forward", "1x2", "out shape", [](Backend& be, S& s) { be.softplus_forward(s.scalar(), s.t(1, 2)); }},
      {"softplus_backward", "4x4", "d_out shape",
       [](Backend& be, S& s) { be.softplus_backward(s.t(4, 5), s.t(4, 4), s.t(4, 5)); }},
      {"softplus_backward", "3x5", "dx shape",
       [](Backend& be, S& s) { be.softplus_backward(s.t(4, 5), s.t(4, 5), s.t(3, 5)); }},
      {"combine_forward", "9 terms", "more than kMaxTerms terms",
       [](Backend& be, S& s) { ScalarTerms t; t.n = kMaxTerms + 1; be.combine_forward(t, s.scalar()); }},
      {"combine_forward", "-1 terms", "a negative count",
       [](Backend& be, S& s) { ScalarTerms t; t.n = -1; be.combine_forward(t, s.scalar()); }},
      {"combine_forward", "term 0", "a term without a value",
       [](Backend& be, S& s) { ScalarTerms t; t.n = 1; be.combine_forward(t, s.scalar()); }},
      {"combine_forward", "1x2", "out not 1x1",
       [](Backend& be, S& s) { ScalarTerms t; be.combine_forward(t, s.t(1, 2)); }},
      {"combine_backward", "9 terms", "more than kMaxTerms terms",
       [](Backend& be, S& s) { ScalarTermGrads g; g.n = kMaxTerms + 1; be.combine_backward(g, s.scalar()); }},
      {"combine_backward", "2x1", "d_out not 1x1",
       [](Backend& be, S& s) { ScalarTermGrads g; be.combine_backward(g, s.t(2, 1)); }},
      {"rmsprop_update", "1x9", "grads shape",
       [](Backend& be, S& s) { be.rmsprop_update(s.t(1, 10), s.t(1, 9), s.t(1, 10), RmsPropHyper{0.1f}); }},
      {"rmsprop_update", "contiguous", "strided parameters",
       [](Backend& be, S& s) { be.rmsprop_update(s.t(2, 5, 8), s.t(2, 5), s.t(2, 5), RmsPropHyper{0.1f}); }},
      {"weight_grad_rmsprop_update", "6x4", "params rows not x's columns",
       [](Backend& be, S& s) { be.weight_grad_rmsprop_update(s.t(3, 5), s.t(3, 4), s.t(6, 4), s.t(6, 4), s.t(6, 4), RmsPropHyper{0.1f}); }},
      {"weight_grad_rmsprop_update", "5x3", "mean_square shape",
       [](Backend& be, S& s) { be.weight_grad_rmsprop_update(s.t(3, 5), s.t(3, 4), s.t(5, 4), s.t(5, 4), s.t(5, 3), RmsPropHyper{0.1f}); }},
      {"weight_grad_rmsprop_update", "contiguous", "strided grads",
       [](Backend& be, S& s) { be.weight_grad_rmsprop_update(s.t(3, 5), s.t(3, 4), s.t(5, 4), s.t(5, 4, 8), s.t(5, 4), RmsPropHyper{0.1f}); }},
      {"adam_update", "1x3", "beta_powers of three",
       [](Backend& be, S& s) { be.adam_update(s.t(1, 10), s.t(1, 10), s.t(1, 10), s.t(1, 10), s.t(1, 3), AdamHyper{0.1f}); }},
      {"adam_update", "1x11", "m shape",
       [](Backend& be, S& s) { be.adam_update(s.t(1, 10), s.t(1, 10), s.t(1, 11), s.t(1, 10), s.t(1, 2), AdamHyper{0.1f}); }},
      {"adam_update", "", "v on the other device",
       [](Backend& be, S& s) {
         be.adam_update(s.t(1, 10), s.t(1, 10), s.t(1, 10), S::elsewhere(s.t(1, 10)), s.t(1, 2), AdamHyper{0.1f});
       }},
      {"weight_grad_adam_update", "6x4", "params rows not x's columns",
       [](Backend& be, S& s) {
         be.weight_grad_adam_update(s.t(3, 5), s.t(3, 4), s.t(6, 4), s.t(6, 4), s.t(6, 4), s.t(6, 4), s.t(1, 2), AdamHyper{0.1f});
       }},
      {"weight_grad_adam_update", "5x3", "v shape",
       [](Backend& be, S& s) {
         be.weight_grad_adam_update(s.t(3, 5), s.t(3, 4), s.t(5, 4), s.t(5, 4), s.t(5, 4), s.t(5, 3), s.t(1, 2), AdamHyper{0.1f});
       }},
      {"weight_grad_adam_update", "1x3", "beta_powers of three",
       [](Backend& be, S& s) {
         be.weight_grad_adam_update(s.t(3, 5), s.t(3, 4), s.t(5, 4), s.t(5, 4), s.t(5, 4), s.t(5, 4), s.t(1, 3), AdamHyper{0.1f});
       }},
      {"increment_counter", "", "no counter", [](Backend& be, S&) { be.increment_counter(nullptr); }},
      {"store_scalar", "slot 4 of 4", "slot past the end",
       [](Backend& be, S& s) { be.store_scalar(s.scalar(), s.t(1, 4), 4, nullptr, 0); }},
      {"store_scalar", "slot -1", "negative slot",
       [](Backend& be, S& s) { be.store_scalar(s.scalar(), s.t(1, 4), -1, nullptr, 0); }},
      {"store_scalar", "1x2", "value not 1x1",
       [](Backend& be, S& s) { be.store_scalar(s.t(1, 2), s.t(1, 4), 0, s.counter(), 1); }},
      {"topk_cosine", "4x9", "widths differ",
       [=](Backend& be, S& s) mutable { be.topk_cosine(s.t(2, 8), s.t(4, 9), 2, 0, index.data(), score.data()); }},
      {"topk_cosine", "k must be >= 1, got 0", "k = 0",
       [=](Backend& be, S& s) mutable { be.topk_cosine(s.t(2, 8), s.t(4, 8), 0, 0, index.data(), score.data()); }},
      {"topk_cosine", "got -3", "negative k",
       [=](Backend& be, S& s) mutable { be.topk_cosine(s.t(2, 8), s.t(4, 8), -3, 0, index.data(), score.data()); }},
      {"topk_cosine", "dim must be >= 1", "zero width",
       [=](Backend& be, S& s) mutable { be.topk_cosine(s.t(2, 0), s.t(4, 0), 2, 0, index.data(), score.data()); }},
      {"topk_cosine", "index_offset", "negative offset",
       [=](Backend& be, S& s) mutable { be.topk_cosine(s.t(2, 8), s.t(4, 8), 2, -1, index.data(), score.data()); }},
      {"topk_cosine", "", "gallery on the other device",
       [=](Backend& be, S& s) mutable {
         be.topk_cosine(s.t(2, 8), S::elsewhere(s.t(4, 8)), 2, 0, index.data(), score.data());
       }},
      {"topk_cosine", "host arrays", "no output arrays",
       [](Backend& be, S& s) { be.topk_cosine(s.t(2, 8), s.t(4, 8), 2, 0, nullptr, nullptr); }},
  };
}

// Runs every bad call on `be`; returns how many reached an implementation.
void expect_bad_calls_rejected(Backend& be, const std::string& backend_name) {
  for (const BadCall& bad : bad_calls()) {
    Scratch scratch(be);
    const std::string what = backend_name + ": " + bad.op + " with " + bad.why;
    try {
      bad.call(be, scratch);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(bad.op + ":", 0), 0u) << what << ": the message should start with the op: " << m;
      EXPECT_NE(m.find(bad.detail), std::string::npos) << what << ": expected '" << bad.detail << "' in: " << m;
    } catch (const ReachedImplementation&) {
      ADD_FAILURE() << what << ": reached the backend's implementation unchecked";
    }
  }
  be.synchronize();
}

TEST(BackendBadCalls, AreRejectedBeforeAnyImplementationRuns) {
  InertBackend inert;
  expect_bad_calls_rejected(inert, "inert backend");
  EXPECT_EQ(inert.reached, 0);
  // The double does notice a call that gets through.
  Scratch s(inert);
  EXPECT_THROW(inert.gemm(false, false, 1.f, s.t(3, 4), s.t(4, 6), 0.f, s.t(3, 6)), ReachedImplementation);
  EXPECT_EQ(inert.reached, 1);
}

TEST(BackendBadCalls, ThrowNamingTheOpOnTheCpuBackend) {
  expect_bad_calls_rejected(*present().cpu, "cpu");
}

// Indices are read where the rows are gathered, so only there can they be checked: on the CPU
// at the call (the CUDA backend's kernel records a fault, test_cuda_backend.cc). A gather of no
// columns reads no values but still checks its indices.
TEST(BackendBadCalls, AnOutOfRangeGatherIndexThrowsOnTheCpuBackend) {
  Backend& be = *present().cpu;
  Scratch s(be);
  for (int cols : {8, 0})
    for (int32_t bad : {10, -1}) {
      int32_t* idx = s.indices(3);
      const int32_t host[3] = {2, bad, 0};
      be.upload_bytes(idx, host, sizeof host);
      try {
        be.gather_rows(s.t(3, cols), s.t(10, cols), IndexSpan{idx, 3});
        ADD_FAILURE() << "index " << bad << " of a 10-row table, " << cols << " columns: no error";
      } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("gather_rows"), std::string::npos) << m;
        EXPECT_NE(m.find("reads row " + std::to_string(bad)), std::string::npos) << m;
      }
    }
}

TEST(BackendBadCalls, ThrowNamingTheOpOnTheCudaBackend) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device: " << reason;
  expect_bad_calls_rejected(*present().cuda, "cuda");
}

}  // namespace
}  // namespace zscrgan
