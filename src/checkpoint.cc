#include "zscrgan/checkpoint.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include <limits>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "json_strict.h"
#include "zscrgan/safetensors.h"

namespace zscrgan {
namespace {

using nlohmann::json;

std::vector<float> download(Backend& be, const Tensor& t) {
  std::vector<float> host(t.numel());
  be.download(t, host.data());
  return host;
}

void add_tensors(SafeTensorsFile& f, Backend& be, const std::vector<NamedTensor>& tensors,
                 const std::string& prefix) {
  for (const NamedTensor& t : tensors) {
    const std::vector<float> host = download(be, t.tensor);
    f.tensors.push_back(make_f32_tensor(prefix + t.name, {t.tensor.rows, t.tensor.cols}, host.data()));
  }
}

void load_tensors(const SafeTensorsFile& f, Backend& be, const std::vector<NamedTensor>& tensors,
                  const std::string& prefix) {
  for (const NamedTensor& t : tensors) {
    const std::vector<float> host = f.f32(prefix + t.name, {t.tensor.rows, t.tensor.cols});
    be.upload(t.tensor, host.data());
  }
}

// A fast 64-bit hash of every metadata entry but the hash itself (key and value, in key order)
// and of every tensor's name and bytes, in name order: safetensors has no checksum of its own,
// and a flipped bit in a weight or a digit changed in the run state (the best score, the noise
// offset) would otherwise load silently. Builds before the metadata was covered hashed the
// tensors only (with_metadata = false), which is how such a file is recognised and refused.
std::string content_hash(const SafeTensorsFile& f, bool with_metadata = true) {
  std::vector<const SafeTensor*> order;
  for (const SafeTensor& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafeTensor* a, const SafeTensor* b) { return a->name < b->name; });
  uint64_t h = 0x9E3779B97F4A7C15ull;
  auto mix = [&](uint64_t w) {
    h ^= w;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  };
  auto mix_bytes = [&](const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    for (; i < n; ++i) mix(p[i]);
    mix(n);
  };
  if (with_metadata) {
    uint64_t entries = 0;
    for (const auto& [key, value] : f.metadata) {  // std::map: in key order
      if (key == "content_hash") continue;
      mix_bytes(reinterpret_cast<const uint8_t*>(key.data()), key.size());
      mix_bytes(reinterpret_cast<const uint8_t*>(value.data()), value.size());
      ++entries;
    }
    mix(entries);
  }
  for (const SafeTensor* t : order) {
    for (unsigned char c : t->name) mix(c);
    mix_bytes(t->bytes.data(), t->bytes.size());
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::atomic<uint64_t> g_checkpoint_files_read{0};

SafeTensorsFile read_checkpoint_file(const std::string& path) {
  g_checkpoint_files_read.fetch_add(1);
  SafeTensorsFile f = read_safetensors(path);
  auto it = f.metadata.find("format");
  if (it == f.metadata.end() || it->second != kCheckpointFormat)
    fail(path, ": not a zscrgan checkpoint (metadata 'format' is ",
         it == f.metadata.end() ? std::string("missing") : in_quotes(it->second), ", expected '",
         kCheckpointFormat, "')");
  for (const char* key : {"config", "run", "content_hash"})
    if (!f.metadata.count(key)) fail(path, ": checkpoint metadata lacks '", key, "'");
  const std::string& recorded = f.metadata.at("content_hash");
  const std::string hash = content_hash(f);
  if (hash == recorded) return f;
  if (content_hash(f, /*with_metadata=*/false) == recorded)
    fail(path, ": refused: its content hash covers the tensors only, not the metadata (written by ",
         "an earlier build of format ", kCheckpointFormat, "), so its run state and config cannot ",
         "be verified; retrain, or resume with the build that wrote it");
  fail(path, ": corrupted: the content hash of its metadata and tensors is ", hash,
       " but the file records ", in_quotes(recorded, 40));
}

json parse_metadata_json(const SafeTensorsFile& f, const std::string& key) {
  return detail::parse_json_strict(f.metadata.at(key), f.source + " (metadata '" + key + "')");
}

template <typename T>
T get(const json& j, const char* key, const std::string& source) {
  if (!j.is_object() || !j.contains(key)) fail(source, ": checkpoint run state lacks '", key, "'");
  const json& v = j.at(key);
  auto wrong = [&] { fail(source, ": checkpoint run state '", key, "' has the wrong type or range: ", detail::describe_json(v)); };
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

}  // namespace

bool resumable_key(const std::string& key) {
  static const char* keys[] = {"rounds", "time_budget_s", "output_dir", "device", "datasets_root",
                               "dataset", "top_k", "ap_divisor", "tf32", "cuda_graphs", "epochs"};
  return std::any_of(std::begin(keys), std::end(keys), [&](const char* k) { return key == k; });
}

void save_checkpoint(Trainer& trainer, const std::string& path) {
  Backend& be = trainer.backend();
  Model& m = trainer.model();
  SafeTensorsFile f;
  f.metadata["format"] = kCheckpointFormat;
  f.metadata["config"] = config_to_json(trainer.config());
  add_tensors(f, be, m.parameter_tensors(), "param/");
  add_tensors(f, be, m.state_tensors(), "state/");

  const SamplerState s = trainer.sampler().state();
  f.tensors.push_back(make_i64_tensor("sampler/class_order", {int64_t(s.class_order.size())}, s.class_order.data()));
  f.tensors.push_back(make_i64_tensor("sampler/image_cursor", {int64_t(s.image_cursor.size())}, s.image_cursor.data()));

  const RoundProgress p = trainer.round_progress();
  if (p.in_round) {
    const std::vector<int64_t> rows(p.rows.begin(), p.rows.end());
    f.tensors.push_back(make_i64_tensor("round/rows", {int64_t(rows.size())}, rows.data()));
    f.tensors.push_back(make_f32_tensor("round/step_losses", {int64_t(p.step_losses.size())}, p.step_losses.data()));
  }
  const RunState& st = trainer.state();
  json run = {{"round", st.round},
              {"noise_offset", st.noise_offset},
              {"best_score", st.best_score},
              {"best_round", st.best_round},
              {"elapsed_s", st.elapsed_s},
              {"optimizer_steps",
               {{"generator", m.generator_group.steps},
                {"critic", m.critic_group.steps},
                {"csem", m.csem_group.steps}}},
              {"sampler",
               {{"position", s.position}, {"rng_seed", s.rng_seed}, {"rng_counter", s.rng_counter}}},
              {"round_progress",
               {{"in_round", p.in_round},
                {"e_done", p.e_done},
                {"csem_done", p.csem_done},
                {"noise_base", p.noise_base}}}};
  f.metadata["run"] = run.dump();
  f.metadata["content_hash"] = content_hash(f);
  write_safetensors_atomic(path, f);
}

OpenedCheckpoint open_checkpoint(const std::string& path) {
  OpenedCheckpoint c;
  c.file = read_checkpoint_file(path);
  c.path = path;
  return c;
}

uint64_t checkpoint_files_read() { return g_checkpoint_files_read.load(); }

void load_checkpoint(Trainer& trainer, const std::string& path) {
  load_checkpoint(trainer, open_checkpoint(path));
}

void load_checkpoint(Trainer& trainer, const OpenedCheckpoint& checkpoint) {
  const SafeTensorsFile& f = checkpoint.file;
  const std::string& path = checkpoint.path;
  // The training configuration must be the one the checkpoint was trained with.
  const json stored = json::parse(config_to_json(checkpoint_config(checkpoint)));
  const json current = json::parse(config_to_json(trainer.config()));
  for (auto it = stored.begin(); it != stored.end(); ++it) {
    if (resumable_key(it.key()) || !current.contains(it.key()) || current[it.key()] == it.value()) continue;
    fail(path, ": config key '", it.key(), "' is ", printable(detail::json_text(it.value()), 100),
         " in the checkpoint but ", printable(detail::json_text(current[it.key()]), 100),
         " in this run; a run resumes with the configuration it was trained with");
  }
  Backend& be = trainer.backend();
  Model& m = trainer.model();
  load_tensors(f, be, m.parameter_tensors(), "param/");
  load_tensors(f, be, m.state_tensors(), "state/");

  const json run = parse_metadata_json(f, "run");
  RunState& st = trainer.state();
  st.round = get<int>(run, "round", path);
  st.noise_offset = get<uint64_t>(run, "noise_offset", path);
  st.best_score = get<double>(run, "best_score", path);
  st.best_round = get<int>(run, "best_round", path);
  st.elapsed_s = get<double>(run, "elapsed_s", path);
  const json steps = get<json>(run, "optimizer_steps", path);
  m.generator_group.steps = get<int64_t>(steps, "generator", path);
  m.critic_group.steps = get<int64_t>(steps, "critic", path);
  m.csem_group.steps = get<int64_t>(steps, "csem", path);

  const json sj = get<json>(run, "sampler", path);
  SamplerState s;
  s.class_order = as_i64(f.at("sampler/class_order"));
  s.image_cursor = as_i64(f.at("sampler/image_cursor"));
  s.position = get<int64_t>(sj, "position", path);
  s.rng_seed = get<uint64_t>(sj, "rng_seed", path);
  s.rng_counter = get<uint64_t>(sj, "rng_counter", path);
  try {
    trainer.sampler().restore(s);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }

  const json pj = get<json>(run, "round_progress", path);
  RoundProgress p;
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
    trainer.restore_round_progress(p);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

CheckpointStanding checkpoint_standing(const std::string& path) {
  return checkpoint_standing(open_checkpoint(path));
}

CheckpointStanding checkpoint_standing(const OpenedCheckpoint& checkpoint) {
  const SafeTensorsFile& f = checkpoint.file;
  const std::string& path = checkpoint.path;
  const json run = parse_metadata_json(f, "run");
  CheckpointStanding s;
  s.round = get<int>(run, "round", path);
  s.best_round = get<int>(run, "best_round", path);
  s.best_score = get<double>(run, "best_score", path);
  s.in_round = get<bool>(get<json>(run, "round_progress", path), "in_round", path);
  return s;
}

Config checkpoint_config(const std::string& path, const std::vector<std::string>& overrides) {
  return checkpoint_config(open_checkpoint(path), overrides);
}

Config checkpoint_config(const OpenedCheckpoint& checkpoint, const std::vector<std::string>& overrides) {
  return parse_config(checkpoint.file.metadata.at("config"), checkpoint.path + " (stored config)",
                      overrides);
}

ModelDims checkpoint_model_dims(const std::string& path) {
  return checkpoint_model_dims(open_checkpoint(path));
}

ModelDims checkpoint_model_dims(const OpenedCheckpoint& checkpoint) {
  const SafeTensorsFile& f = checkpoint.file;
  const std::string& path = checkpoint.path;
  auto shape = [&](const char* name) {
    const SafeTensor& t = f.at(std::string("param/") + name);
    if (t.shape.size() != 2) fail(path, ": tensor 'param/", name, "' is not a matrix");
    return t.shape;
  };
  const auto cond = shape("generator.condition.w");  // Dt x 2E
  const auto fc1 = shape("generator.fc1.w");         // E + Z x Gf
  const auto fc3 = shape("generator.fc3.w");         // 2Gf x Dv
  const auto d1 = shape("critic.fc1.w");             // Dv + Dt x Df
  ModelDims d;
  d.text_dim = static_cast<int>(cond[0]);
  d.embed_dim = static_cast<int>(cond[1] / 2);
  d.z_dim = static_cast<int>(fc1[0] - d.embed_dim);
  d.gf_dim = static_cast<int>(fc1[1]);
  d.image_dim = static_cast<int>(fc3[1]);
  d.df_dim = static_cast<int>(d1[1]);
  return d;
}

void load_model_parameters(Model& model, const std::string& path) {
  load_model_parameters(model, open_checkpoint(path));
}

void load_model_parameters(Model& model, const OpenedCheckpoint& checkpoint) {
  load_tensors(checkpoint.file, model.backend(), model.parameter_tensors(), "param/");
}

}  // namespace zscrgan
