// The end-to-end golden run: one definition of the computation that tests/test_end_to_end.cc
// compares with tests/golden/end_to_end.json and that the update_golden program
// (tests/update_golden.cc) writes into it. Regenerate the file only on purpose, with
//   cmake --build build --target update_golden && ./build/update_golden
#ifndef ZSCRGAN_TESTS_END_TO_END_GOLDEN_H
#define ZSCRGAN_TESTS_END_TO_END_GOLDEN_H

#include <nlohmann/json.hpp>

#include "train/run.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace zscrgan::golden {

inline const char* const kEndToEndPath = ZSCRGAN_SOURCE_DIR "/tests/golden/end_to_end.json";
inline const char* const kUpdateCommand =
    "cmake --build build --target update_golden && ./build/update_golden";

// A small fixed-seed configuration on the synthetic dataset.
inline Config short_run() {
  Config c;
  c.gf_dim = 64;
  c.df_dim = 32;
  c.embed_dim = 16;
  c.z_dim = 8;
  c.e_step_iters = 10;
  c.m_step_iters = 10;
  c.seed = 11;
  c.synthetic.seen_classes = 12;
  c.synthetic.unseen_classes = 6;
  c.synthetic.images_per_class = 20;
  c.synthetic.text_dim = 16;
  c.synthetic.image_dim = 24;
  c.top_k = 10;
  return c;
}

// The names of each round's values, in order.
inline const char* const kValueNames[] = {"loss_d", "loss_g", "loss_csem", "loss_kl",
                                          "prec",   "map",    "top1"};

// Three rounds of short_run() on the CPU backend: {"rounds": [[loss_d, loss_g, loss_csem,
// loss_kl, prec, map, top1] per round]}.
inline nlohmann::json end_to_end_values() {
  const Config cfg = short_run();
  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer t(cfg, data, *be);
  nlohmann::json rounds = nlohmann::json::array();
  for (int r = 0; r < 3; ++r) {
    const RoundLosses l = t.train_round();
    const EvalResult e = t.evaluate();
    rounds.push_back({l.critic, l.generator, l.csem, l.kl, e.prec_at_k, e.map_at_k, e.top1});
  }
  return nlohmann::json{{"rounds", rounds}};
}

}  // namespace zscrgan::golden

#endif  // ZSCRGAN_TESTS_END_TO_END_GOLDEN_H
