#include "zscrgan/run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "zscrgan/fileio.h"
#include "zscrgan/metrics.h"
#include "zscrgan/retrieval.h"
#include "zscrgan/trainer.h"

namespace fs = std::filesystem;

namespace zscrgan {

std::unique_ptr<Backend> select_backend(const std::string& device, std::ostream& note) {
  if (device == "cpu") return make_cpu_backend();
  if (device == "cuda") return make_cuda_backend();
  ZS_CHECK(device == "auto", "unknown device '", device, "'");
  const std::string reason = cuda_unavailable_reason();
  if (reason.empty()) {
    auto be = make_cuda_backend();
    note << "device: " << be->description() << "\n";
    return be;
  }
  auto be = make_cpu_backend();
  note << "device: no usable GPU (" << reason << "); using " << be->description() << "\n";
  return be;
}

Dataset load_configured_dataset(const Config& cfg) {
  if (cfg.dataset == "synthetic") return make_synthetic_dataset(cfg.synthetic);
  const bool is_path = cfg.dataset.find('/') != std::string::npos;
  const std::string dir = is_path ? cfg.dataset : (fs::path(cfg.datasets_root) / cfg.dataset).string();
  return load_dataset_folder(dir);
}

namespace {

std::string format_duration(double s) {
  std::ostringstream os;
  const long t = std::lround(s);
  if (t >= 3600) os << t / 3600 << "h" << std::setw(2) << std::setfill('0') << (t % 3600) / 60 << "m";
  else if (t >= 60) os << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else os << std::fixed << std::setprecision(1) << s << "s";
  return os.str();
}

std::string score_name(double score) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "acc%.4f.json", score);
  return buf;
}

}  // namespace

RunSummary run_training(const Config& cfg, std::ostream& out) {
  // Everything that can fail on bad input happens before the output folder is touched.
  Dataset data = load_configured_dataset(cfg);
  validate_dataset(data, cfg.dataset);
  std::unique_ptr<Backend> backend = select_backend(cfg.device, out);
  Trainer trainer(cfg, data, *backend);

  const fs::path dir(cfg.output_dir);
  fs::create_directories(dir / "retrieved");
  for (const auto& entry : fs::directory_iterator(dir / "retrieved"))
    if (entry.path().extension() == ".json") fs::remove(entry.path());
  fs::remove(dir / "metrics.jsonl");
  write_file_atomic((dir / "config.json").string(), config_to_json(cfg) + "\n");

  const ModelDims& d = trainer.model().dims();
  out << "dataset " << data.name << ": " << data.train_classes.size() << " seen / "
      << data.test_classes.size() << " unseen classes, images " << data.image_features.rows
      << " x " << d.image_dim << ", texts " << data.text_features.rows << " x " << d.text_dim
      << "; chance Precision@" << cfg.top_k << " ~ " << std::setprecision(3)
      << 1.0 / data.test_classes.size() << "\n";
  out << "model " << std::fixed << std::setprecision(1) << trainer.model().bytes() / 1048576.0
      << " MiB (parameters + gradients + optimizer state); rounds " << cfg.rounds << " x ("
      << cfg.e_step_iters << " x (" << cfg.n_critic << " D + 1 G) + " << cfg.m_step_iters
      << " CSEM steps)\n"
      << std::flush;

  RunSummary summary;
  RunState& st = trainer.state();
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  while (st.round < cfg.rounds) {
    const auto t0 = clock::now();
    RoundLosses losses = trainer.train_round();
    trainer.check_parameters_finite();
    const double train_s = std::chrono::duration<double>(clock::now() - t0).count();
    EvalResult ev = trainer.evaluate();
    const double round_s = std::chrono::duration<double>(clock::now() - t0).count();
    st.elapsed_s += round_s;
    const bool best = ev.prec_at_k > st.best_score;
    if (best) {
      st.best_score = ev.prec_at_k;
      st.best_round = st.round;
      TopKLists lists;
      lists.n_queries = static_cast<int64_t>(ev.query_labels.size());
      lists.k = ev.k;
      lists.index = ev.retrieved;
      write_file_atomic((dir / "retrieved" / score_name(ev.prec_at_k)).string(),
                        retrieval_record_json(ev.query_labels, ev.gallery_labels, lists) + "\n");
    }
    nlohmann::json line = {{"round", st.round},
                           {"seconds", round_s},
                           {"train_seconds", train_s},
                           {"loss_d", losses.critic},
                           {"loss_g", losses.generator},
                           {"loss_csem", losses.csem},
                           {"loss_kl", losses.kl},
                           {"prec_at_k", ev.prec_at_k},
                           {"map_at_k", ev.map_at_k},
                           {"top1", ev.top1},
                           {"k", ev.k}};
    append_line((dir / "metrics.jsonl").string(), line.dump());
    const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
    const int done = st.round;
    const double eta = elapsed / done * (cfg.rounds - done);
    out << "round " << done << "/" << cfg.rounds << "  " << format_duration(round_s) << " (eta "
        << format_duration(eta) << ")  L_D " << std::setprecision(4) << losses.critic << "  L_G "
        << losses.generator << "  L_C " << losses.csem << "  KL " << losses.kl << "  P@" << ev.k
        << " " << ev.prec_at_k << "  mAP@" << ev.k << " " << ev.map_at_k << "  top1 " << ev.top1
        << "  best " << st.best_score << " (round " << st.best_round << ")" << (best ? " *" : "")
        << "\n"
        << std::flush;
    summary.train_seconds += train_s;
    if (cfg.time_budget_s > 0 && elapsed >= cfg.time_budget_s) {
      out << "time budget of " << cfg.time_budget_s << " s reached after round " << done << "\n";
      break;
    }
  }
  summary.rounds = st.round;
  summary.best_score = st.best_score;
  summary.best_round = st.best_round;
  out << "best Precision@" << cfg.top_k << " " << std::setprecision(4) << st.best_score
      << " (round " << st.best_round << "); training " << format_duration(summary.train_seconds)
      << "; results in " << cfg.output_dir << "\n";
  return summary;
}

}  // namespace zscrgan
