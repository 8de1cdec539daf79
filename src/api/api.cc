// The facade (include/zscrgan/zscrgan.h) over the modules: each call forwards to them and
// turns their exceptions into api::Error of the matching kind, message unchanged.
#include "zscrgan/zscrgan.h"

#include <filesystem>
#include <iostream>
#include <new>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/error.h"
#include "core/version.h"
#include "data/dataset.h"
#include "data/dataset_source.h"
#include "import/importers.h"
#include "infer/inference.h"
#include "train/run.h"
#include "train/trainer.h"

namespace zscrgan::api {
namespace {

namespace fs = std::filesystem;
using Kind = Error::Kind;

template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const DivergenceError& e) {
    throw Error(Kind::Diverged, e.what());
  } catch (const FileError& e) {
    throw Error(Kind::File, e.what());
  } catch (const DeviceError& e) {
    throw Error(Kind::Device, e.what());
  } catch (const zscrgan::Error& e) {
    throw Error(Kind::Input, e.what());
  } catch (const fs::filesystem_error& e) {
    throw Error(Kind::File, e.what());
  }
}

std::vector<int64_t> to_vector(LabelsView v, const char* what) {
  if (v.size < 0 || (v.size > 0 && v.data == nullptr))
    fail("Dataset.from_arrays: ", what, ": not a vector");
  return std::vector<int64_t>(v.data, v.data + v.size);
}

HostMatrix to_matrix(MatrixView m, const char* what) {
  if (m.rows < 0 || m.cols < 0 || (m.rows * m.cols > 0 && m.data == nullptr))
    fail("Dataset.from_arrays: ", what, ": not a matrix");
  HostMatrix h;
  h.rows = m.rows;
  h.cols = m.cols;
  h.data.assign(m.data, m.data + m.rows * m.cols);
  return h;
}

MatrixView view(const HostMatrix& m) { return {m.data.data(), m.rows, m.cols}; }
LabelsView view(const std::vector<int64_t>& v) { return {v.data(), int64_t(v.size())}; }
MatrixRef ref(MatrixView m, const char* name) { return {m.data, m.rows, m.cols, name}; }

std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

// ---- Dataset ------------------------------------------------------------------------------

struct Dataset::Impl {
  std::shared_ptr<const zscrgan::Dataset> data;
};

Dataset::Dataset(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

namespace {
Dataset wrap(zscrgan::Dataset&& d) {
  auto impl = std::make_shared<Dataset::Impl>();
  impl->data = std::make_shared<const zscrgan::Dataset>(std::move(d));
  return Dataset(std::move(impl));
}
}  // namespace

Dataset Dataset::from_arrays(MatrixView image_features, LabelsView image_labels,
                             MatrixView text_features, LabelsView text_labels,
                             LabelsView train_classes, LabelsView test_classes,
                             const std::string& name) {
  return guarded([&] {
    zscrgan::Dataset d;
    d.name = name;
    d.image_features = to_matrix(image_features, "image_features");
    d.image_labels = to_vector(image_labels, "image_labels");
    d.text_features = to_matrix(text_features, "text_features");
    d.text_labels = to_vector(text_labels, "text_labels");
    d.train_classes = to_vector(train_classes, "train_classes");
    d.test_classes = to_vector(test_classes, "test_classes");
    validate_dataset(d, "the given dataset");
    return wrap(std::move(d));
  });
}

Dataset Dataset::load(const std::string& folder) {
  return guarded([&] { return wrap(load_dataset_folder(folder)); });
}

Dataset Dataset::from_config(const std::string& config_json, const std::string& source) {
  return guarded([&] { return wrap(load_configured_dataset(parse_config(config_json, source))); });
}

void Dataset::save(const std::string& folder) const {
  guarded([&] { write_dataset_folder(*impl_->data, folder); });
}

const std::string& Dataset::name() const { return impl_->data->name; }
MatrixView Dataset::image_features() const { return view(impl_->data->image_features); }
LabelsView Dataset::image_labels() const { return view(impl_->data->image_labels); }
MatrixView Dataset::text_features() const { return view(impl_->data->text_features); }
LabelsView Dataset::text_labels() const { return view(impl_->data->text_labels); }
LabelsView Dataset::train_classes() const { return view(impl_->data->train_classes); }
LabelsView Dataset::test_classes() const { return view(impl_->data->test_classes); }

// ---- training -----------------------------------------------------------------------------

TrainResult train(const TrainOptions& o) {
  return guarded([&] {
    std::vector<std::string> overrides = o.overrides;
    if (!o.output_dir.empty()) overrides.push_back("output_dir=" + quoted(o.output_dir));
    if (!o.device.empty()) overrides.push_back("device=" + quoted(o.device));
    const Config cfg = o.config_json.empty()
                           ? load_config(o.config_path, overrides)
                           : parse_config(o.config_json, o.config_source, overrides);
    RunOptions run;
    if (o.dataset) run.dataset = o.dataset->impl()->data;
    run.overwrite = o.overwrite;
    run.on_round = o.on_round;
    run.should_stop = o.should_stop;
    std::ostream quiet(nullptr);
    const RunSummary s = run_training(cfg, o.quiet ? quiet : std::cout, std::move(run));
    TrainResult r;
    r.rounds = s.round_records;
    r.output_dir = cfg.output_dir;
    const fs::path dir = fs::path(cfg.output_dir) / "checkpoints";
    r.last_checkpoint = (dir / "last.safetensors").string();
    if (s.best_round > 0) r.best_checkpoint = (dir / "best.safetensors").string();
    r.best_score = s.best_score;
    r.best_round = s.best_round;
    r.stopped_by_signal = s.stopped_by_signal;
    r.stopped_by_caller = s.stopped_by_caller;
    return r;
  });
}

// ---- Model --------------------------------------------------------------------------------

struct Model::Impl {
  std::unique_ptr<InferenceModel> model;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::load(const std::string& checkpoint, const std::string& device, bool quiet) {
  return guarded([&] {
    auto impl = std::make_unique<Impl>();
    std::ostream silent(nullptr);
    impl->model = std::make_unique<InferenceModel>(checkpoint, device, quiet ? silent : std::cout);
    return Model(std::move(impl));
  });
}

int Model::text_dim() const { return impl_->model->dims().text_dim; }
int Model::image_dim() const { return impl_->model->dims().image_dim; }
int Model::embed_dim() const { return impl_->model->dims().embed_dim; }
uint64_t Model::seed() const { return impl_->model->config().seed; }
std::string Model::config_json() const { return config_to_json(impl_->model->config()); }
std::string Model::device() const { return impl_->model->device_description(); }
const std::string& Model::checkpoint() const { return impl_->model->checkpoint(); }

void Model::embed_texts(MatrixView texts, int samples, uint64_t seed, float* out) const {
  guarded([&] { impl_->model->embed_texts(ref(texts, "texts"), samples, seed, out); });
}

void Model::embed_images(MatrixView images, int64_t chunk_rows, float* out) const {
  guarded([&] { impl_->model->embed_images(ref(images, "images"), chunk_rows, out); });
}

void Model::retrieve(MatrixView texts, MatrixView gallery, int k, int samples, uint64_t seed,
                     int64_t chunk_rows, int64_t* indices, float* scores) const {
  guarded([&] {
    const TopKLists lists = impl_->model->retrieve(ref(texts, "texts"), ref(gallery, "gallery"),
                                                   k, samples, seed, chunk_rows);
    std::copy(lists.index.begin(), lists.index.end(), indices);
    std::copy(lists.score.begin(), lists.score.end(), scores);
  });
}

Metrics Model::evaluate(const Dataset& data) const {
  return guarded([&] {
    const EvalResult r = impl_->model->evaluate(*data.impl()->data);
    Metrics m;
    m.k = r.k;
    m.prec_at_k = r.prec_at_k;
    m.map_at_k = r.map_at_k;
    m.top1 = r.top1;
    m.queries = int64_t(r.query_labels.size());
    m.gallery = int64_t(r.gallery_labels.size());
    return m;
  });
}

// ---- importers ----------------------------------------------------------------------------

std::string import_dataset(const ImportOptions& o) {
  return guarded([&] {
    zscrgan::ImportOptions io;
    io.format = o.format;
    io.input = o.input;
    io.output = o.output;
    io.class_embedding = o.class_embedding;
    io.original_att = o.original_att;
    io.split = o.split;
    io.name = o.name;
    std::ostringstream summary;
    run_import(io, summary);
    return summary.str();
  });
}

std::string version() { return zscrgan::version(); }

}  // namespace zscrgan::api
