// zscrgan._core: the nanobind module over the facade (include/zscrgan/zscrgan.h) and nothing
// else. Arrays come in as C-contiguous CPU float32 / int64 buffers read in place (no
// conversion here: zscrgan/__init__.py hands over numpy views of whatever it was given) and go
// out as numpy arrays; facade errors become ValueError, OSError, RuntimeError or
// zscrgan.DivergenceError with the library's message. The GIL is released while the library
// works.
#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "zscrgan/zscrgan.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace api = zscrgan::api;

namespace {

using MatrixIn = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using LabelsIn = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <typename T, size_t N>
using ArrayOut = nb::ndarray<nb::numpy, T, nb::ndim<N>>;

PyObject* g_divergence_error = nullptr;

api::MatrixView view(const MatrixIn& a) {
  return {a.data(), int64_t(a.shape(0)), int64_t(a.shape(1))};
}
api::LabelsView view(const LabelsIn& a) { return {a.data(), int64_t(a.shape(0))}; }

// A new numpy array of shape (rows, cols) owning its memory.
template <typename T>
std::pair<ArrayOut<T, 2>, T*> new_matrix(int64_t rows, int64_t cols) {
  T* data = new T[size_t(rows) * size_t(cols) + 1];
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return {ArrayOut<T, 2>(data, {size_t(rows), size_t(cols)}, owner), data};
}

// Read-only numpy views of a dataset's arrays, keeping the dataset alive.
nb::capsule keep(const api::Dataset& d) {
  return nb::capsule(new api::Dataset(d),
                     [](void* p) noexcept { delete static_cast<api::Dataset*>(p); });
}
nb::ndarray<nb::numpy, const float, nb::ndim<2>> out(const api::Dataset& d, api::MatrixView m) {
  return {m.data, {size_t(m.rows), size_t(m.cols)}, keep(d)};
}
nb::ndarray<nb::numpy, const int64_t, nb::ndim<1>> out(const api::Dataset& d, api::LabelsView v) {
  return {v.data, {size_t(v.size)}, keep(d)};
}

nb::dict metrics_dict(const api::Metrics& m) {
  nb::dict d;
  d["k"] = m.k;
  d["prec_at_k"] = m.prec_at_k;
  d["map_at_k"] = m.map_at_k;
  d["top1"] = m.top1;
  d["queries"] = m.queries;
  d["gallery"] = m.gallery;
  return d;
}

nb::dict train(const std::string& config_json, const std::string& config_path,
               const std::string& config_source, const std::vector<std::string>& overrides,
               const api::Dataset* dataset, const std::string& output_dir, bool overwrite,
               const std::string& device, nb::object on_round, bool quiet) {
  api::TrainOptions o;
  o.config_json = config_json;
  o.config_path = config_path;
  o.config_source = config_source;
  o.overrides = overrides;
  o.dataset = dataset;
  o.output_dir = output_dir;
  o.overwrite = overwrite;
  o.device = device;
  o.quiet = quiet;
  // A Python exception met while the library runs (KeyboardInterrupt from a pending signal, or
  // raised by on_round): the run is stopped, its checkpoint written, and it is raised after.
  std::optional<nb::python_error> raised;
  o.should_stop = [&raised] {
    nb::gil_scoped_acquire gil;
    if (raised) return true;
    if (PyErr_CheckSignals() != 0) raised.emplace();
    return raised.has_value();
  };
  if (!on_round.is_none())
    o.on_round = [&raised, &on_round](const std::string& record) {
      nb::gil_scoped_acquire gil;
      if (raised) return false;
      try {
        const nb::object keep_going = on_round(record);
        if (PyErr_CheckSignals() != 0) raised.emplace();
        return !raised && !keep_going.is(nb::handle(Py_False));
      } catch (nb::python_error& e) {
        raised.emplace(std::move(e));
        return false;
      }
    };
  api::TrainResult r;
  {
    nb::gil_scoped_release released;
    r = api::train(o);
  }
  if (raised) throw std::move(*raised);
  if (r.stopped_by_signal == SIGINT) {
    const std::string msg = "training stopped by SIGINT; state saved to " + r.last_checkpoint;
    PyErr_SetString(PyExc_KeyboardInterrupt, msg.c_str());
    throw nb::python_error();
  }
  nb::dict d;
  d["rounds"] = r.rounds;
  d["output_dir"] = r.output_dir;
  d["best_checkpoint"] = r.best_checkpoint;
  d["last_checkpoint"] = r.last_checkpoint;
  d["best_score"] = r.best_score;
  d["best_round"] = r.best_round;
  d["stopped_by_signal"] = r.stopped_by_signal;
  d["stopped_by_caller"] = r.stopped_by_caller;
  return d;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "zscrgan's C++ library (the facade in include/zscrgan/zscrgan.h)";

  g_divergence_error = PyErr_NewExceptionWithDoc(
      "zscrgan.DivergenceError", "Training diverged: a loss or a parameter became NaN or Inf.",
      PyExc_RuntimeError, nullptr);
  m.attr("DivergenceError") = nb::handle(g_divergence_error);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const api::Error& e) {
      PyObject* type = PyExc_ValueError;
      switch (e.kind()) {
        case api::Error::Kind::Input: type = PyExc_ValueError; break;
        case api::Error::Kind::File: type = PyExc_OSError; break;
        case api::Error::Kind::Device: type = PyExc_RuntimeError; break;
        case api::Error::Kind::Diverged: type = g_divergence_error; break;
      }
      PyErr_SetString(type, e.what());
    }
  });

  nb::class_<api::Dataset>(m, "Dataset", "A zero-shot retrieval dataset (immutable).")
      .def_static(
          "from_arrays",
          [](const MatrixIn& image_features, const LabelsIn& image_labels,
             const MatrixIn& text_features, const LabelsIn& text_labels,
             const LabelsIn& train_classes, const LabelsIn& test_classes,
             const std::string& name) {
            nb::gil_scoped_release released;
            return api::Dataset::from_arrays(view(image_features), view(image_labels),
                                             view(text_features), view(text_labels),
                                             view(train_classes), view(test_classes), name);
          },
          "image_features"_a.noconvert(), "image_labels"_a.noconvert(),
          "text_features"_a.noconvert(), "text_labels"_a.noconvert(),
          "train_classes"_a.noconvert(), "test_classes"_a.noconvert(), "name"_a = "arrays")
      .def_static("load", [](const std::string& folder) {
            nb::gil_scoped_release released;
            return api::Dataset::load(folder);
          }, "folder"_a, "Reads an interchange folder (dataset.json and four .npy files).")
      .def_static("_from_config", [](const std::string& json, const std::string& source) {
            nb::gil_scoped_release released;
            return api::Dataset::from_config(json, source);
          }, "config_json"_a, "source"_a)
      .def("save", [](const api::Dataset& d, const std::string& folder) {
            nb::gil_scoped_release released;
            d.save(folder);
          }, "folder"_a, "Writes the interchange folder (atomically).")
      .def_prop_ro("name", &api::Dataset::name)
      .def_prop_ro("image_features", [](const api::Dataset& d) { return out(d, d.image_features()); },
                   nb::rv_policy::reference)
      .def_prop_ro("image_labels", [](const api::Dataset& d) { return out(d, d.image_labels()); },
                   nb::rv_policy::reference)
      .def_prop_ro("text_features", [](const api::Dataset& d) { return out(d, d.text_features()); },
                   nb::rv_policy::reference)
      .def_prop_ro("text_labels", [](const api::Dataset& d) { return out(d, d.text_labels()); },
                   nb::rv_policy::reference)
      .def_prop_ro("train_classes", [](const api::Dataset& d) { return out(d, d.train_classes()); },
                   nb::rv_policy::reference)
      .def_prop_ro("test_classes", [](const api::Dataset& d) { return out(d, d.test_classes()); },
                   nb::rv_policy::reference);

  nb::class_<api::Model>(m, "Model", "A trained model loaded from a checkpoint.")
      .def_static("load", [](const std::string& checkpoint, const std::string& device, bool quiet) {
            nb::gil_scoped_release released;
            return api::Model::load(checkpoint, device, quiet);
          }, "checkpoint"_a, "device"_a = "auto", "quiet"_a = true)
      .def_prop_ro("text_dim", &api::Model::text_dim)
      .def_prop_ro("image_dim", &api::Model::image_dim)
      .def_prop_ro("embed_dim", &api::Model::embed_dim)
      .def_prop_ro("seed", &api::Model::seed, "The run's seed (the queries it evaluated with).")
      .def_prop_ro("config_json", &api::Model::config_json)
      .def_prop_ro("device", &api::Model::device)
      .def_prop_ro("checkpoint", &api::Model::checkpoint)
      .def("_embed_texts", [](const api::Model& model, const MatrixIn& texts, int samples,
                              uint64_t seed) {
            auto [array, data] = new_matrix<float>(int64_t(texts.shape(0)), model.embed_dim());
            nb::gil_scoped_release released;
            model.embed_texts(view(texts), samples, seed, data);
            return array;
          }, "texts"_a.noconvert(), "samples"_a, "seed"_a)
      .def("_embed_images", [](const api::Model& model, const MatrixIn& images, int64_t chunk_rows) {
            auto [array, data] = new_matrix<float>(int64_t(images.shape(0)), model.embed_dim());
            nb::gil_scoped_release released;
            model.embed_images(view(images), chunk_rows, data);
            return array;
          }, "images"_a.noconvert(), "chunk_rows"_a)
      .def("_retrieve", [](const api::Model& model, const MatrixIn& texts, const MatrixIn& gallery,
                           int k, int samples, uint64_t seed, int64_t chunk_rows) {
            const int64_t n = int64_t(texts.shape(0));
            const int64_t kk = k > 0 ? k : 0;
            auto [indices, index_data] = new_matrix<int64_t>(n, kk);
            auto [scores, score_data] = new_matrix<float>(n, kk);
            {
              nb::gil_scoped_release released;
              model.retrieve(view(texts), view(gallery), k, samples, seed, chunk_rows, index_data,
                             score_data);
            }
            return nb::make_tuple(indices, scores);
          }, "texts"_a.noconvert(), "gallery"_a.noconvert(), "k"_a, "samples"_a, "seed"_a,
          "chunk_rows"_a)
      .def("evaluate", [](const api::Model& model, const api::Dataset& data) {
            api::Metrics r;
            {
              nb::gil_scoped_release released;
              r = model.evaluate(data);
            }
            return metrics_dict(r);
          }, "dataset"_a,
          "Precision@K, mAP@K and Top-1 on the dataset with the run's top_k, ap_divisor and "
          "seed: the metrics the run logged when it is the run's dataset.");

  m.def("_train", &train, "config_json"_a, "config_path"_a, "config_source"_a, "overrides"_a,
        "dataset"_a.none(), "output_dir"_a, "overwrite"_a, "device"_a, "on_round"_a.none(), "quiet"_a);

  m.def("_import_dataset", [](const std::string& format, const std::string& input,
                              const std::string& output, const std::string& class_embedding,
                              bool original_att, const std::string& split, const std::string& name) {
        api::ImportOptions o{format, input, output, class_embedding, original_att, split, name};
        nb::gil_scoped_release released;
        return api::import_dataset(o);
      }, "format"_a, "input"_a, "output"_a, "class_embedding"_a, "original_att"_a, "split"_a,
      "name"_a);

  m.def("_address", [](const MatrixIn& a) { return reinterpret_cast<uintptr_t>(a.data()); },
        "a"_a.noconvert(), "The address the library reads a matrix argument at (for tests).");
  m.def("version", &api::version);
}
