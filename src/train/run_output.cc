#include "train/run_output.h"

#include <cstdio>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"
#include "train/checkpoint.h"
#include "train/pickle.h"

namespace fs = std::filesystem;

namespace zscrgan {

namespace {
bool is_retrieval_record(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".json" || ext == ".pkl";
}
}  // namespace

std::string retrieval_record_base_name(double prec_at_k) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "acc%.4f", prec_at_k);
  return buf;
}

std::string earlier_run_file(const std::string& output_dir) {
  const fs::path dir(output_dir);
  std::error_code ec;
  for (const fs::path& p : {dir / "checkpoints" / "last.safetensors",
                            dir / "checkpoints" / "best.safetensors", dir / "metrics.jsonl"})
    if (fs::exists(p, ec)) return p.string();
  if (fs::is_directory(dir / "retrieved", ec))
    for (const auto& entry : fs::directory_iterator(dir / "retrieved", ec))
      if (is_retrieval_record(entry.path())) return entry.path().string();
  return "";
}

RunOutput::RunOutput(const std::string& output_dir, RetrievalRecords records)
    : dir_(output_dir), records_(records) {}

std::string RunOutput::last_checkpoint() const {
  return (fs::path(dir_) / "checkpoints" / "last.safetensors").string();
}

std::string RunOutput::best_checkpoint() const {
  return (fs::path(dir_) / "checkpoints" / "best.safetensors").string();
}

void RunOutput::open(const Config& cfg, std::shared_ptr<const OpenedCheckpoint> resumed, int rounds,
                     std::ostream& out) {
  const fs::path dir(dir_);
  const fs::path last = last_checkpoint(), best_ckpt = best_checkpoint();
  const fs::path metrics = dir / "metrics.jsonl";
  for (const fs::path& sub : {dir / "retrieved", dir / "checkpoints"}) {
    std::error_code ec;
    fs::create_directories(sub, ec);
    if (ec) fail(sub.string(), ": cannot create the folder: ", ec.message());
  }
  // Temporaries a killed run left behind (each later write of the same file removes them too).
  for (const fs::path& p : {last, best_ckpt, metrics, dir / "config.json"})
    remove_stale_temporaries(p.string());
  remove_stale_temporaries_in((dir / "retrieved").string(),
                              [](const std::string& target) { return is_retrieval_record(target); });
  if (resumed) {
    // `last` is written before `best`: a run killed between the two writes of a round that beat
    // the best left a `best` that is missing or older than the best `last` records. Rebuild it
    // from `last`, which is that very state.
    // Nothing has written `last` since it was loaded: when it is the file resumed from, its
    // standing comes from the copy already read.
    std::error_code same_ec;
    const bool same = fs::equivalent(last, resumed->path, same_ec);
    const CheckpointStanding now =
        same ? checkpoint_standing(*resumed) : checkpoint_standing(last.string());
    resumed.reset();  // the file's bytes are model-sized: not kept for the whole run
    if (now.best_round > 0) {
      std::error_code ec;
      bool have_best = fs::exists(best_ckpt, ec);
      int best_holds = -1;
      if (have_best) {
        // A damaged `best` does not stop the run: it is moved aside, kept for inspection, and
        // then treated as missing (rebuilt from `last` where `last` is that state).
        try {
          best_holds = checkpoint_standing(best_ckpt.string()).round;
        } catch (const Error& e) {
          const fs::path aside = best_ckpt.string() + ".damaged";
          fs::rename(best_ckpt, aside);
          have_best = false;
          out << "warning: " << best_ckpt.string() << " cannot be read (" << e.what()
              << "); moved to " << aside.string() << "\n";
        }
      }
      if (best_holds != now.best_round) {
        if (now.best_round == now.round && !now.in_round) {
          write_file_atomic(best_ckpt.string(), read_text_file(last.string()));
          out << "rebuilt " << best_ckpt.string() << " (round " << now.best_round
              << ") from " << last.string() << ": the run had stopped before writing it\n";
        } else {
          out << "warning: " << best_ckpt.string()
              << (have_best ? " holds round " + std::to_string(best_holds) : std::string(" is missing"))
              << " but the run's best is round " << now.best_round << "; it cannot be rebuilt\n";
        }
      }
    }
    // A run killed between appending a round's metrics and saving its checkpoint repeats that
    // round: keep only the lines of rounds the checkpoint holds.
    if (fs::exists(metrics)) {
      std::istringstream lines(read_text_file(metrics.string()));
      std::string line, kept;
      while (std::getline(lines, line)) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("round") && j["round"].is_number_integer() &&
            j["round"].get<int>() <= rounds)
          kept += line + "\n";
      }
      write_file_atomic(metrics.string(), kept);
    }
  } else {
    // run_training refuses this unless asked to overwrite.
    if (!earlier_run_file(dir_).empty())
      out << "replacing the earlier run in " << dir_
          << ": its checkpoints, metrics and retrieval records are removed\n";
    for (const auto& entry : fs::directory_iterator(dir / "retrieved"))
      if (is_retrieval_record(entry.path())) fs::remove(entry.path());
    fs::remove(metrics);
    fs::remove(last);
    fs::remove(best_ckpt);
  }
  write_file_atomic((dir / "config.json").string(), config_to_json(cfg) + "\n");
}

void RunOutput::append_metrics(const std::string& line) {
  append_line((fs::path(dir_) / "metrics.jsonl").string(), line);
}

void RunOutput::write_best_retrieval(const EvalResult& ev) {
  const fs::path base = fs::path(dir_) / "retrieved" / retrieval_record_base_name(ev.prec_at_k);
  TopKLists lists;
  lists.n_queries = static_cast<int64_t>(ev.query_labels.size());
  lists.k = ev.k;
  lists.index = ev.retrieved;
  // The JSON writer validates the lists (shapes, gallery positions) for both records.
  const std::string json = retrieval_record_json(ev.query_labels, ev.gallery_labels, lists);
  if (records_.json) write_file_atomic(base.string() + ".json", json + "\n");
  if (records_.pickle) {
    // Built from the JSON record, so that the two cannot disagree.
    const nlohmann::json j = nlohmann::json::parse(json);
    std::vector<QueryRetrieval> record(j.size());
    for (size_t q = 0; q < record.size(); ++q) {
      record[q].query_class = j[q].at("query_class").get<int64_t>();
      record[q].retrieved_classes = j[q].at("retrieved_classes").get<std::vector<int64_t>>();
    }
    write_file_atomic(base.string() + ".pkl", pickle_retrieval_record(record));
  }
}

}  // namespace zscrgan
