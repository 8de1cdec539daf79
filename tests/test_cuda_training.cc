// The trainer and retrieval on a GPU: graph replay against eager rounds (bit-identical, the
// test that catches a value frozen into a CUDA graph), a CUDA round against the CPU round,
// and retrieval over a gallery of many tiles and chunks against the CPU. Without a usable GPU
// every test here skips and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "backend/backend.h"
#include "eval/retrieval.h"
#include "train/run.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

using zscrgan::testing::all_close;

class CudaTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device, test skipped: " << reason;
  }
};

Config small_config() {
  Config c;
  c.gf_dim = 64;
  c.df_dim = 32;
  c.embed_dim = 16;
  c.z_dim = 8;
  c.e_step_iters = 6;
  c.m_step_iters = 650;  // three CSEM chunks, the last one short
  c.n_critic = 5;
  c.batch_size = 8;
  c.seed = 23;
  c.top_k = 10;
  c.synthetic.seen_classes = 12;
  c.synthetic.unseen_classes = 5;
  c.synthetic.images_per_class = 16;
  c.synthetic.text_dim = 20;
  c.synthetic.image_dim = 28;
  return c;
}

std::vector<float> parameters(Trainer& t) {
  std::vector<float> all;
  for (const NamedTensor& p : t.model().parameter_tensors()) {
    std::vector<float> host(p.tensor.numel());
    t.backend().download(p.tensor, host.data());
    all.insert(all.end(), host.begin(), host.end());
  }
  return all;
}

TEST_F(CudaTraining, GraphReplayEqualsEagerRoundsBitForBit) {
  const Config cfg = small_config();
  const Dataset data = load_configured_dataset(cfg);
  auto be_graphs = make_cuda_backend(), be_eager = make_cuda_backend();
  Trainer graphs(cfg, data, *be_graphs), eager(cfg, data, *be_eager);
  eager.set_capture(false);
  ASSERT_TRUE(graphs.replays_captured_steps());
  ASSERT_FALSE(eager.replays_captured_steps());
  for (int r = 1; r <= 3; ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    const RoundLosses a = graphs.train_round(), b = eager.train_round();
    EXPECT_EQ(a.critic, b.critic);
    EXPECT_EQ(a.generator, b.generator);
    EXPECT_EQ(a.csem, b.csem);
    EXPECT_EQ(a.kl, b.kl);
    EXPECT_TRUE(all_close(parameters(eager), parameters(graphs), 0, 0, "parameters"));
    const EvalResult ea = graphs.evaluate(), eb = eager.evaluate();
    EXPECT_EQ(ea.prec_at_k, eb.prec_at_k);
    EXPECT_EQ(ea.retrieved, eb.retrieved);
  }
}

TEST_F(CudaTraining, OneCudaRoundMatchesTheCpuRound) {
  Config cfg = small_config();
  cfg.m_step_iters = 20;
  const Dataset data = load_configured_dataset(cfg);
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend();
  Trainer on_cpu(cfg, data, *cpu), on_gpu(cfg, data, *gpu);
  // The same initial weights and noise on both (Philox and the initialiser are shared code).
  EXPECT_TRUE(all_close(parameters(on_cpu), parameters(on_gpu), 1e-7, 1e-6, "initial parameters"));
  const RoundLosses a = on_cpu.train_round(), b = on_gpu.train_round();
  EXPECT_NEAR(b.critic, a.critic, 1e-5 + 1e-3 * std::fabs(a.critic));
  EXPECT_NEAR(b.generator, a.generator, 1e-4 + 1e-3 * std::fabs(a.generator));
  EXPECT_NEAR(b.csem, a.csem, 1e-5 + 1e-3 * std::fabs(a.csem));
  EXPECT_NEAR(b.kl, a.kl, 1e-6 + 1e-3 * std::fabs(a.kl));
  EXPECT_TRUE(all_close(parameters(on_cpu), parameters(on_gpu), 1e-5, 1e-3, "parameters after a round"));
}

// Retrieval at the published width over a gallery of more than 65,536 rows (several CUDA tiles
// and several retrieve_topk chunks), with copies of one row in different tiles and chunks.
TEST_F(CudaTraining, RetrievalOverManyTilesAndChunksMatchesTheCpu) {
  const int dim = 1024, n_gallery = 70000, n_queries = 16, k = 50;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> g(size_t(n_gallery) * dim), q(size_t(n_queries) * dim);
  for (float& x : g) x = normal(rng);
  for (float& x : q) x = normal(rng);
  const std::vector<int> copies = {100, 4095, 4096, 40000, 65536, 69999};
  for (int r : copies) std::copy(g.begin(), g.begin() + dim, g.begin() + size_t(r) * dim);
  std::copy(g.begin(), g.begin() + dim, q.begin());  // query 0 is row 0: its copies top its list

  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend();
  Tensor qc(q.data(), n_queries, dim, Device::CPU), gc(g.data(), n_gallery, dim, Device::CPU);
  Tensor qg(static_cast<float*>(gpu->allocate(q.size() * 4)), n_queries, dim, Device::CUDA);
  Tensor gg(static_cast<float*>(gpu->allocate(g.size() * 4)), n_gallery, dim, Device::CUDA);
  gpu->upload(qg, q.data());
  gpu->upload(gg, g.data());
  const TopKLists want = retrieve_topk(*cpu, qc, gc, k, 1 << 16);
  const TopKLists got = retrieve_topk(*gpu, qg, gg, k, 1 << 16);
  gpu->deallocate(qg.data);
  gpu->deallocate(gg.data);

  // Query 0: row 0 and its copies first, in row order. Every tile's GEMM has one shape in
  // every chunk (the last chunk, 4464 rows, included), so the copies score bitwise alike and
  // the tie rule orders them.
  std::vector<int64_t> top(got.index.begin(), got.index.begin() + copies.size() + 1);
  std::vector<int64_t> expected = {0};
  expected.insert(expected.end(), copies.begin(), copies.end());
  EXPECT_EQ(top, expected);
  for (size_t i = 1; i <= copies.size(); ++i)
    EXPECT_EQ(got.score[i], got.score[0]) << "a copy of row 0 at rank " << i << " scores differently";
  for (size_t at = 0; at < got.index.size(); ++at) {
    EXPECT_NEAR(got.score[at], want.score[at], 1e-5) << "query " << at / k << " rank " << at % k;
    if (at % k > 0 && got.score[at] == got.score[at - 1])
      EXPECT_LT(got.index[at - 1], got.index[at]) << "equal scores out of index order";
  }
  int same = 0;
  for (size_t at = 0; at < got.index.size(); ++at) same += got.index[at] == want.index[at];
  EXPECT_GE(same, int(got.index.size() * 98 / 100)) << "beyond near-ties, the same lists";
}

}  // namespace
}  // namespace zscrgan
