#include "train/checkpoint.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <limits>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/json_strict.h"
#include "formats/safetensors.h"
#include "model/checkpoint_file.h"

namespace zscrgan {
namespace {

using nlohmann::json;

// A value of the checkpoint's metadata record `record` ("run state", "dataset record").
template <typename T>
T get(const json& j, const char* key, const std::string& source, const char* record = "run state") {
  if (!j.is_object() || !j.contains(key)) fail(source, ": checkpoint ", record, " lacks '", key, "'");
  const json& v = j.at(key);
  auto wrong = [&] {
    fail(source, ": checkpoint ", record, " '", key, "' has the wrong type or range: ", detail::describe_json(v));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) wrong();
  } else if constexpr (std::is_integral_v<T>) {
    // nlohmann's get<int> would wrap a value that does not fit.
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())) wrong();
    } else if (v.is_number_integer()) {
      const int64_t n = v.get<int64_t>();
      if (std::is_unsigned_v<T> ? n < 0 : n < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                                              n > static_cast<int64_t>(std::numeric_limits<T>::max()))
        wrong();
    } else {
      wrong();
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) wrong();
  } else {
    if (!v.is_object()) wrong();
  }
  return v.get<T>();
}

json dataset_record(const DatasetIdentity& d) {
  return {{"images", d.images},       {"image_dim", d.image_dim},
          {"texts", d.texts},         {"text_dim", d.text_dim},
          {"seen_classes", d.seen_classes}, {"unseen_classes", d.unseen_classes},
          {"content_hash", d.content_hash}};
}

DatasetIdentity dataset_record_identity(const json& j, const std::string& source) {
  constexpr const char* kRecord = "dataset record";
  DatasetIdentity d;
  d.images = get<int64_t>(j, "images", source, kRecord);
  d.image_dim = get<int64_t>(j, "image_dim", source, kRecord);
  d.texts = get<int64_t>(j, "texts", source, kRecord);
  d.text_dim = get<int64_t>(j, "text_dim", source, kRecord);
  d.seen_classes = get<int64_t>(j, "seen_classes", source, kRecord);
  d.unseen_classes = get<int64_t>(j, "unseen_classes", source, kRecord);
  if (!j.contains("content_hash") || !j.at("content_hash").is_string())
    fail(source, ": checkpoint dataset record lacks a string 'content_hash'");
  d.content_hash = j.at("content_hash").get<std::string>();
  return d;
}

}  // namespace

void save_checkpoint(Trainer& trainer, const RunState& st, const std::string& path) {
  Backend& be = trainer.backend();
  Model& m = trainer.model();
  SafeTensorsFile f;
  f.metadata["format"] = kCheckpointFormat;
  f.metadata["config"] = config_to_json(trainer.config());
  f.metadata["dataset"] = dataset_record(trainer.dataset_identity()).dump();
  add_checkpoint_tensors(f, be, m.parameter_tensors(), "param/");
  add_checkpoint_tensors(f, be, m.state_tensors(), "state/");

  const TrainingState t = trainer.training_state();
  const SamplerState& s = t.sampler;
  f.tensors.push_back(make_i64_tensor("sampler/class_order", {int64_t(s.class_order.size())}, s.class_order.data()));
  f.tensors.push_back(make_i64_tensor("sampler/image_cursor", {int64_t(s.image_cursor.size())}, s.image_cursor.data()));

  const RoundProgress& p = t.progress;
  if (p.in_round) {
    const std::vector<int64_t> rows(p.rows.begin(), p.rows.end());
    f.tensors.push_back(make_i64_tensor("round/rows", {int64_t(rows.size())}, rows.data()));
    f.tensors.push_back(make_f32_tensor("round/step_losses", {int64_t(p.step_losses.size())}, p.step_losses.data()));
  }
  json run = {{"round", t.round},
              {"noise_offset", t.noise_offset},
              {"best_score", st.best_score},
              {"best_round", st.best_round},
              {"elapsed_s", st.elapsed_s},
              {"optimizer_steps",
               {{"generator", t.optimizer_steps.generator},
                {"critic", t.optimizer_steps.critic},
                {"csem", t.optimizer_steps.csem}}},
              {"sampler",
               {{"position", s.position}, {"rng_seed", s.rng_seed}, {"rng_counter", s.rng_counter}}},
              {"round_progress",
               {{"in_round", p.in_round},
                {"e_done", p.e_done},
                {"csem_done", p.csem_done},
                {"noise_base", p.noise_base}}}};
  f.metadata["run"] = run.dump();
  f.metadata["content_hash"] = checkpoint_content_hash(f);
  write_safetensors_atomic(path, f);
}

RunState load_checkpoint(Trainer& trainer, const std::string& path) {
  return load_checkpoint(trainer, open_checkpoint(path));
}

RunState load_checkpoint(Trainer& trainer, const OpenedCheckpoint& checkpoint) {
  const SafeTensorsFile& f = checkpoint.file;
  const std::string& path = checkpoint.path;
  // The training configuration must be the one the checkpoint was trained with.
  const json stored = json::parse(config_to_json(checkpoint_config(checkpoint)));
  const json current = json::parse(config_to_json(trainer.config()));
  for (auto it = stored.begin(); it != stored.end(); ++it) {
    if (config_key_resumable(it.key()) || !current.contains(it.key()) || current[it.key()] == it.value()) continue;
    fail(path, ": config key '", it.key(), "' is ", printable(detail::json_text(it.value()), 100),
         " in the checkpoint but ", printable(detail::json_text(current[it.key()]), 100),
         " in this run; a run resumes with the configuration it was trained with");
  }
  // And the data the one it was trained on (the dataset key names a folder, which may have been
  // renamed or moved; the record says what was in it). Checkpoints written before the record
  // existed have none and resume unchecked.
  if (f.metadata.count("dataset")) {
    const DatasetIdentity trained = dataset_record_identity(parse_checkpoint_metadata_json(f, "dataset"), path);
    const DatasetIdentity& now = trainer.dataset_identity();
    if (dataset_record(trained) != dataset_record(now))
      fail(path, ": trained on other data than this run's dataset ",
           in_quotes(trainer.config().dataset), ": then ", trained.describe(), ", content hash ",
           printable(trained.content_hash, 40), "; now ", now.describe(), ", content hash ",
           now.content_hash, "; a run resumes on the data it was trained with");
  }
  Backend& be = trainer.backend();
  Model& m = trainer.model();
  load_checkpoint_tensors(f, be, m.parameter_tensors(), "param/");
  load_checkpoint_tensors(f, be, m.state_tensors(), "state/");

  const json run = parse_checkpoint_metadata_json(f, "run");
  TrainingState t;
  RunState st;
  t.round = get<int>(run, "round", path);
  t.noise_offset = get<uint64_t>(run, "noise_offset", path);
  st.best_score = get<double>(run, "best_score", path);
  st.best_round = get<int>(run, "best_round", path);
  st.elapsed_s = get<double>(run, "elapsed_s", path);
  if (!(st.elapsed_s >= 0 && std::isfinite(st.elapsed_s)) || st.best_round < 0 || st.best_round > t.round ||
      !(st.best_round == 0 ? st.best_score == -1 : st.best_score >= 0 && st.best_score <= 1 + 1e-9))
    fail(path, ": checkpoint run state is out of range (round ", t.round, ", best_round ",
         st.best_round, ", best_score ", st.best_score, ", elapsed_s ", st.elapsed_s, ")");
  const json steps = get<json>(run, "optimizer_steps", path);
  t.optimizer_steps.generator = get<int64_t>(steps, "generator", path);
  t.optimizer_steps.critic = get<int64_t>(steps, "critic", path);
  t.optimizer_steps.csem = get<int64_t>(steps, "csem", path);

  const json sj = get<json>(run, "sampler", path);
  SamplerState& s = t.sampler;
  s.class_order = as_i64(f.at("sampler/class_order"));
  s.image_cursor = as_i64(f.at("sampler/image_cursor"));
  s.position = get<int64_t>(sj, "position", path);
  s.rng_seed = get<uint64_t>(sj, "rng_seed", path);
  s.rng_counter = get<uint64_t>(sj, "rng_counter", path);

  const json pj = get<json>(run, "round_progress", path);
  RoundProgress& p = t.progress;
  p.in_round = get<bool>(pj, "in_round", path);
  if (p.in_round) {
    p.e_done = get<int>(pj, "e_done", path);
    p.csem_done = get<int>(pj, "csem_done", path);
    p.noise_base = get<uint64_t>(pj, "noise_base", path);
    const std::vector<int64_t> rows = as_i64(f.at("round/rows"));
    p.rows.assign(rows.begin(), rows.end());
    p.step_losses = as_f32(f.at("round/step_losses"));
  }
  try {
    trainer.restore_training_state(t);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return st;
}

CheckpointStanding checkpoint_standing(const std::string& path) {
  return checkpoint_standing(open_checkpoint(path));
}

CheckpointStanding checkpoint_standing(const OpenedCheckpoint& checkpoint) {
  const SafeTensorsFile& f = checkpoint.file;
  const std::string& path = checkpoint.path;
  const json run = parse_checkpoint_metadata_json(f, "run");
  CheckpointStanding s;
  s.round = get<int>(run, "round", path);
  s.best_round = get<int>(run, "best_round", path);
  s.best_score = get<double>(run, "best_score", path);
  s.in_round = get<bool>(get<json>(run, "round_progress", path), "in_round", path);
  return s;
}

}  // namespace zscrgan
