#include "train/run.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "train/checkpoint.h"
#include "data/dataset_source.h"
#include "device/device.h"
#include "train/run_output.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace zscrgan {

namespace {

std::string format_duration(double s) {
  std::ostringstream os;
  const long t = std::lround(s);
  if (t >= 3600) os << t / 3600 << "h" << std::setw(2) << std::setfill('0') << (t % 3600) / 60 << "m";
  else if (t >= 60) os << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else os << std::fixed << std::setprecision(1) << s << "s";
  return os.str();
}

// `s` as one word for a POSIX shell: as it is when it holds no special character, otherwise
// single-quoted.
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./-+=:,@%") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

// Installs the SIGINT/SIGTERM handlers for the run's lifetime, restoring the old ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// A live progress line on a terminal; a plain line every 30 s otherwise.
class Progress {
 public:
  Progress(std::ostream& out, Trainer& t) : out_(out), trainer_(t), tty_(isatty(STDOUT_FILENO)) {}
  void round_started(int round, int rounds) {
    round_ = round;
    rounds_ = rounds;
    start_ = last_ = std::chrono::steady_clock::now();
  }
  void update(int done, int total) {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    // A terminal gets a live line (and its final state); a log gets a line every 30 s.
    if (since < (tty_ ? 0.25 : 30.0) && (done < total || !tty_)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    float d, g, c;
    trainer_.latest_losses(&d, &g, &c);
    std::ostringstream line;
    line << "round " << round_ << "/" << rounds_ << "  step " << done << "/" << total << "  "
         << std::fixed << std::setprecision(1) << done / std::max(elapsed, 1e-9) << " steps/s  eta "
         << format_duration(elapsed / std::max(done, 1) * (total - done)) << "  L_D "
         << std::setprecision(4) << d << "  L_G " << g << "  L_C " << c;
    if (tty_) {
      out_ << "\r" << line.str() << "\x1b[K" << std::flush;
      shown_ = true;
    } else {
      out_ << line.str() << "\n" << std::flush;
    }
  }
  void clear() {
    if (tty_ && shown_) out_ << "\r\x1b[K" << std::flush;
    shown_ = false;
  }

 private:
  std::ostream& out_;
  Trainer& trainer_;
  bool tty_;
  bool shown_ = false;
  int round_ = 0, rounds_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace

RunSummary run_training(const Config& cfg, std::ostream& out, RunOptions opts) {
  // Everything that can fail on bad input happens before the output folder is touched.
  if (opts.resume_dir.empty() && !opts.overwrite) {
    const std::string earlier = earlier_run_file(cfg.output_dir);
    if (!earlier.empty())
      fail("output_dir ", in_quotes(cfg.output_dir), " holds an earlier run (", in_quotes(earlier),
           "): continue it with --resume ", in_quotes(cfg.output_dir),
           ", replace it with --overwrite (overwrite=True in Python), or choose another output_dir");
  }
  const std::shared_ptr<const Dataset> data =
      opts.dataset ? opts.dataset : std::make_shared<const Dataset>(load_configured_dataset(cfg));
  validate_dataset(*data, opts.dataset ? "the given dataset" : cfg.dataset);
  std::unique_ptr<Backend> backend = select_backend(cfg.device, out, cfg.tf32);
  Trainer trainer(cfg, *data, *backend);
  RetrievalRecords records;
  records.json = cfg.retrieval_record != RetrievalRecord::Pkl;
  records.pickle = cfg.retrieval_record != RetrievalRecord::Json;
  RunOutput output(cfg.output_dir, records);
  const std::string last = output.last_checkpoint(), best_ckpt = output.best_checkpoint();
  RunState st;  // the run's standing: best score and round, elapsed seconds
  std::shared_ptr<const OpenedCheckpoint> resumed;  // null for a fresh run
  if (!opts.resume_dir.empty()) {
    resumed = std::move(opts.resume_checkpoint);
    if (!resumed)
      resumed = std::make_shared<const OpenedCheckpoint>(
          open_checkpoint((fs::path(opts.resume_dir) / "checkpoints" / "last.safetensors").string()));
    st = load_checkpoint(trainer, *resumed);
    out << "resumed from " << opts.resume_dir << " after round " << trainer.rounds_done()
        << (trainer.in_round() ? " (inside the next round)" : "") << "\n";
  }
  output.open(cfg, std::move(resumed), trainer.rounds_done(), out);

  RunSummary summary;
  using clock = std::chrono::steady_clock;
  const double elapsed_before = st.elapsed_s;
  const int rounds_at_start = trainer.rounds_done();
  StopSignals signals;
  Progress progress(out, trainer);
  RoundHooks hooks;
  hooks.on_progress = [&](int done, int total) { progress.update(done, total); };
  bool caller_stopped = false;
  hooks.should_stop = [&] {
    if (g_stop_signal.load() != 0) return true;
    caller_stopped = opts.should_stop && opts.should_stop();
    return caller_stopped;
  };
  // A resumed run may have spent its budget already: it trains nothing more.
  const bool budget_spent = cfg.time_budget_s > 0 && st.elapsed_s >= cfg.time_budget_s;
  if (budget_spent && trainer.rounds_done() < cfg.rounds)
    out << "time budget of " << cfg.time_budget_s << " s already spent (" << format_duration(st.elapsed_s)
        << "); no round trained: raise time_budget_s to go on\n";
  try {
    while (!budget_spent && trainer.rounds_done() < cfg.rounds) {
      const auto t0 = clock::now();
      progress.round_started(trainer.rounds_done() + 1, cfg.rounds);
      std::optional<RoundLosses> finished = trainer.run_round(hooks);
      progress.clear();
      if (!finished) {
        st.elapsed_s += std::chrono::duration<double>(clock::now() - t0).count();
        trainer.check_stopped_round_finite();  // a diverged round must not replace `last`
        save_checkpoint(trainer, st, last);
        summary.stopped_by_signal = g_stop_signal.load();
        summary.stopped_by_caller = summary.stopped_by_signal == 0 && caller_stopped;
        const RoundProgress p = trainer.training_state().progress;
        out << "stopped by "
            << (summary.stopped_by_caller ? "request"
                : summary.stopped_by_signal == SIGTERM ? "SIGTERM" : "SIGINT")
            << " in round " << trainer.rounds_done() + 1 << " after " << p.e_done + p.csem_done << " of "
            << cfg.e_step_iters + cfg.m_step_iters << " steps; state saved to " << last
            // The checkpoint holds the run's configuration, overrides included: --resume alone
            // continues it as it was (a --config without the same overrides would be refused).
            << "\nresume with: zscrgan_cuda --resume " << shell_word(cfg.output_dir) << "\n"
            << std::flush;
        break;
      }
      const RoundLosses losses = *finished;
      trainer.check_parameters_finite();
      const double train_s = std::chrono::duration<double>(clock::now() - t0).count();
      EvalResult ev = trainer.evaluate();
      const double round_s = std::chrono::duration<double>(clock::now() - t0).count();
      st.elapsed_s += round_s;
      const bool best = ev.prec_at_k > st.best_score;
      if (best) {
        st.best_score = ev.prec_at_k;
        st.best_round = trainer.rounds_done();
        output.write_best_retrieval(ev);
      }
      nlohmann::json line = {{"round", trainer.rounds_done()},
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
      output.append_metrics(line.dump());
      save_checkpoint(trainer, st, last);
      if (best) save_checkpoint(trainer, st, best_ckpt);
      const int done = trainer.rounds_done();
      const double eta = (st.elapsed_s - elapsed_before) / std::max(1, done - rounds_at_start) *
                         (cfg.rounds - done);
      out << "round " << done << "/" << cfg.rounds << "  " << format_duration(round_s) << " (eta "
          << format_duration(eta) << ")  L_D " << std::setprecision(4) << losses.critic << "  L_G "
          << losses.generator << "  L_C " << losses.csem << "  KL " << losses.kl << "  P@" << ev.k
          << " " << ev.prec_at_k << "  mAP@" << ev.k << " " << ev.map_at_k << "  top1 " << ev.top1
          << "  best " << st.best_score << " (round " << st.best_round << ")" << (best ? " *" : "")
          << "\n"
          << std::flush;
      summary.train_seconds += train_s;
      summary.round_records.push_back(line.dump());
      if (opts.on_round && !opts.on_round(summary.round_records.back())) {
        summary.stopped_by_caller = true;
        out << "stopped by request after round " << done << "\n";
        break;
      }
      if (cfg.time_budget_s > 0 && st.elapsed_s >= cfg.time_budget_s) {
        out << "time budget of " << cfg.time_budget_s << " s reached after round " << done << "\n";
        break;
      }
    }
  } catch (const DivergenceError& e) {
    // Whether a good checkpoint remains: none when no round of this run had finished.
    std::error_code ec;
    throw DivergenceError(std::string(e.what()) +
                          (fs::exists(last, ec) ? "; the last good checkpoint is kept: " + last
                                                : std::string("; no round had finished, so there is no checkpoint")));
  }
  summary.rounds = trainer.rounds_done();
  summary.best_score = st.best_score;
  summary.best_round = st.best_round;
  if (st.best_round > 0)
    out << "best Precision@" << cfg.top_k << " " << std::setprecision(4) << st.best_score
        << " (round " << st.best_round << ")";
  else
    out << "no round evaluated yet";
  out << "; training " << format_duration(summary.train_seconds) << "; results in " << cfg.output_dir
      << "\n";
  return summary;
}

}  // namespace zscrgan
