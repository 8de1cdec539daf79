// The public facade of zscrgan: datasets, training, a trained model (embed, retrieve,
// evaluate) and the importers, in plain types, for programs that embed the library (the Python
// module in python/ is one). Every call goes to the modules under src/; nothing here is a
// second implementation. This header includes no module header.
#ifndef ZSCRGAN_FACADE_H
#define ZSCRGAN_FACADE_H

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace zscrgan::api {

// Every failure the modules report (their errors and file-system errors; std::bad_alloc and
// other standard exceptions pass through unchanged): the one-line message and its kind.
class Error : public std::runtime_error {
 public:
  enum class Kind {
    Input,     // bad input: a config key, a shape, a value, a malformed file
    File,      // a file or folder that could not be opened, read or written
    Device,    // the compute device is unavailable or failed
    Diverged,  // training diverged (a loss or parameter became NaN or Inf)
  };
  Error(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// A dense row-major float32 matrix held by the caller; read in place.
struct MatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};
// A vector of int64 held by the caller.
struct LabelsView {
  const int64_t* data = nullptr;
  int64_t size = 0;
};

// A zero-shot retrieval dataset (datasets/README.md), immutable once made.
class Dataset {
 public:
  // Copies the arrays and validates them as a loaded dataset is (same checks and messages).
  static Dataset from_arrays(MatrixView image_features, LabelsView image_labels,
                             MatrixView text_features, LabelsView text_labels,
                             LabelsView train_classes, LabelsView test_classes,
                             const std::string& name = "arrays");
  // An interchange folder (dataset.json and four .npy files).
  static Dataset load(const std::string& folder);
  // The dataset a configuration names ("synthetic" or a folder); config as JSON text.
  static Dataset from_config(const std::string& config_json, const std::string& source);
  // Writes the interchange folder (atomically).
  void save(const std::string& folder) const;

  const std::string& name() const;
  MatrixView image_features() const;
  LabelsView image_labels() const;
  MatrixView text_features() const;
  LabelsView text_labels() const;
  LabelsView train_classes() const;
  LabelsView test_classes() const;

  struct Impl;
  explicit Dataset(std::shared_ptr<const Impl> impl);
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

struct TrainOptions {
  std::string config_json;     // the configuration as JSON text (the config file's keys)...
  std::string config_path;     // ... or a config file (used when config_json is empty)
  std::string config_source = "config";  // names config_json in messages
  std::vector<std::string> overrides;    // "key=value", as --set
  const Dataset* dataset = nullptr;      // instead of the one the config names
  std::string output_dir;      // "": the config's
  bool overwrite = false;      // replace an earlier run in output_dir (else: refused)
  std::string device;          // "": the config's; auto | cpu | cuda
  bool quiet = false;          // no progress lines on stdout
  // After every round with its metrics.jsonl line; false stops the run after that round.
  std::function<bool(const std::string& round_record)> on_round;
  // Polled between steps; true stops the run as SIGINT does (checkpoints/last written).
  std::function<bool()> should_stop;
};

struct TrainResult {
  std::vector<std::string> rounds;  // this run's metrics.jsonl lines
  std::string output_dir;
  std::string best_checkpoint;  // "" when no round finished
  std::string last_checkpoint;
  double best_score = 0;
  int best_round = 0;
  int stopped_by_signal = 0;    // SIGINT or SIGTERM
  bool stopped_by_caller = false;
};

TrainResult train(const TrainOptions& options);

struct Metrics {
  int k = 0;
  double prec_at_k = 0;
  double map_at_k = 0;
  double top1 = 0;
  int64_t queries = 0;
  int64_t gallery = 0;
};

// A trained model loaded from a checkpoint, for embedding, retrieval and evaluation.
class Model {
 public:
  static Model load(const std::string& checkpoint, const std::string& device = "auto",
                    bool quiet = true);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  int text_dim() const;
  int image_dim() const;
  int embed_dim() const;
  uint64_t seed() const;         // the run's seed (the queries it evaluated with)
  std::string config_json() const;
  std::string device() const;
  const std::string& checkpoint() const;

  // texts.rows x embed_dim into out.
  void embed_texts(MatrixView texts, int samples, uint64_t seed, float* out) const;
  void embed_images(MatrixView images, int64_t chunk_rows, float* out) const;
  // texts.rows x k indices and scores, best first (as `zscrgan_cuda retrieve` writes them).
  void retrieve(MatrixView texts, MatrixView gallery, int k, int samples, uint64_t seed,
                int64_t chunk_rows, int64_t* indices, float* scores) const;
  Metrics evaluate(const Dataset& data) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct ImportOptions {
  std::string format;           // xlsa17 | gazsl | interchange
  std::string input;
  std::string output;
  std::string class_embedding;  // xlsa17: optional .npy
  bool original_att = false;    // xlsa17
  std::string split;           // gazsl: easy (the default) | hard
  std::string name;             // "": the output folder's name (interchange: its dataset.json's)
};
// Reads, validates and writes the interchange folder; returns the importer's summary.
std::string import_dataset(const ImportOptions& options);

std::string version();

}  // namespace zscrgan::api

#endif  // ZSCRGAN_FACADE_H
