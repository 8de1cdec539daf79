#include "model/checkpoint_file.h"

#include <algorithm>
#include <atomic>

#include "core/content_hash.h"
#include "core/error.h"
#include "core/json_strict.h"

namespace zscrgan {
namespace {

std::atomic<uint64_t> g_checkpoint_files_read{0};

std::vector<float> download(Backend& be, const Tensor& t) {
  std::vector<float> host(t.numel());
  be.download(t, host.data());
  return host;
}

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
  const std::string hash = checkpoint_content_hash(f);
  if (hash == recorded) return f;
  if (checkpoint_content_hash(f, /*with_metadata=*/false) == recorded)
    fail(path, ": refused: its content hash covers the tensors only, not the metadata (written by ",
         "an earlier build of format ", kCheckpointFormat, "), so its run state and config cannot ",
         "be verified; retrain, or resume with the build that wrote it");
  fail(path, ": corrupted: the content hash of its metadata and tensors is ", hash,
       " but the file records ", in_quotes(recorded, 40));
}

}  // namespace

// A fast 64-bit hash of every metadata entry but the hash itself (key and value, in key order)
// and of every tensor's name and bytes, in name order: safetensors has no checksum of its own,
// and a flipped bit in a weight or a digit changed in the run state (the best score, the noise
// offset) would otherwise load silently. Builds before the metadata was covered hashed the
// tensors only (with_metadata = false), which is how such a file is recognised and refused.
std::string checkpoint_content_hash(const SafeTensorsFile& f, bool with_metadata) {
  std::vector<const SafeTensor*> order;
  for (const SafeTensor& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafeTensor* a, const SafeTensor* b) { return a->name < b->name; });
  ContentHash h;
  if (with_metadata) {
    uint64_t entries = 0;
    for (const auto& [key, value] : f.metadata) {  // std::map: in key order
      if (key == "content_hash") continue;
      h.add_bytes(key.data(), key.size());
      h.add_bytes(value.data(), value.size());
      ++entries;
    }
    h.add(entries);
  }
  for (const SafeTensor* t : order) {
    for (unsigned char c : t->name) h.add(c);
    h.add_bytes(t->bytes.data(), t->bytes.size());
  }
  return h.hex();
}


void add_checkpoint_tensors(SafeTensorsFile& f, Backend& be, const std::vector<NamedTensor>& tensors,
                 const std::string& prefix) {
  for (const NamedTensor& t : tensors) {
    const std::vector<float> host = download(be, t.tensor);
    f.tensors.push_back(make_f32_tensor(prefix + t.name, {t.tensor.rows, t.tensor.cols}, host.data()));
  }
}

void load_checkpoint_tensors(const SafeTensorsFile& f, Backend& be, const std::vector<NamedTensor>& tensors,
                  const std::string& prefix) {
  for (const NamedTensor& t : tensors) {
    const std::vector<float> host = f.f32(prefix + t.name, {t.tensor.rows, t.tensor.cols});
    be.upload(t.tensor, host.data());
  }
}

nlohmann::json parse_checkpoint_metadata_json(const SafeTensorsFile& f, const std::string& key) {
  return detail::parse_json_strict(f.metadata.at(key), f.source + " (metadata '" + key + "')");
}

OpenedCheckpoint open_checkpoint(const std::string& path) {
  OpenedCheckpoint c;
  c.file = read_checkpoint_file(path);
  c.path = path;
  return c;
}

uint64_t checkpoint_files_read() { return g_checkpoint_files_read.load(); }

Config checkpoint_config(const std::string& path, const std::vector<std::string>& overrides) {
  return checkpoint_config(open_checkpoint(path), overrides);
}

Config checkpoint_config(const OpenedCheckpoint& checkpoint, const std::vector<std::string>& overrides) {
  return parse_config(checkpoint.file.metadata.at("config"), checkpoint.path + " (stored config)",
                      overrides);
}

int64_t checkpoint_rounds_trained(const OpenedCheckpoint& checkpoint) {
  const nlohmann::json run = parse_checkpoint_metadata_json(checkpoint.file, "run");
  if (!run.is_object() || !run.contains("round") || !run["round"].is_number_integer() ||
      run["round"].get<int64_t>() < 0)
    fail(checkpoint.path, ": checkpoint run state has no 'round' count");
  return run["round"].get<int64_t>();
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
  load_checkpoint_tensors(checkpoint.file, model.backend(), model.parameter_tensors(), "param/");
}

}  // namespace zscrgan
