#include "infer/inference.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <functional>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/arena.h"
#include "config/config.h"
#include "core/fileio.h"
#include "data/dataset_source.h"
#include "device/device.h"
#include "eval/retrieval.h"
#include "formats/npy_stream.h"
#include "model/checkpoint_file.h"
#include "model/encoder.h"
#include "model/model.h"

namespace zscrgan {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kTextEmbeddings = "text_embeddings.npy";
constexpr const char* kImageEmbeddings = "image_embeddings.npy";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double mib(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

std::string fixed1(double v) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << v;
  return os.str();
}

void check_common_options(const std::string& command, const std::string& checkpoint, int samples,
                          int64_t chunk_rows) {
  if (checkpoint.empty()) fail(command, ": no checkpoint given");
  if (samples < 1) fail(command, ": samples must be at least 1, got ", samples);
  if (chunk_rows < 1 || chunk_rows > INT_MAX)
    fail(command, ": chunk_rows must be between 1 and ", INT_MAX, ", got ", chunk_rows);
}

// The checkpoint's dimensions; reading its config first rejects files that are not
// checkpoints with the checkpoint reader's own message.
ModelDims checkpoint_dims(const OpenedCheckpoint& checkpoint) {
  checkpoint_config(checkpoint);
  return checkpoint_model_dims(checkpoint);
}

// Rows of a texts or images matrix, from a .npy file (streamed) or from the caller's memory.
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  virtual const std::string& path() const = 0;  // names the source in messages
  // Rows [first, first + n) into out (n x cols floats, dense).
  virtual void read_rows(int64_t first, int64_t n, float* out) = 0;
};

class NpyRows final : public RowSource {
 public:
  explicit NpyRows(const std::string& path) : reader_(path) {}
  int64_t rows() const override { return reader_.rows(); }
  int64_t cols() const override { return reader_.cols(); }
  const std::string& path() const override { return reader_.path(); }
  void read_rows(int64_t first, int64_t n, float* out) override { reader_.read_rows(first, n, out); }

 private:
  NpyRowReader reader_;
};

class ArrayRows final : public RowSource {
 public:
  explicit ArrayRows(const MatrixRef& m) : m_(m) {
    if (m.rows < 0 || m.cols < 0 || (m.data == nullptr && m.rows * m.cols > 0))
      fail(m.name, ": not a matrix (", m.rows, " x ", m.cols, ")");
  }
  int64_t rows() const override { return m_.rows; }
  int64_t cols() const override { return m_.cols; }
  const std::string& path() const override { return m_.name; }
  void read_rows(int64_t first, int64_t n, float* out) override {
    ZS_CHECK(first >= 0 && n >= 0 && first + n <= m_.rows, "rows [", first, ", ", first + n,
             ") of ", m_.rows);
    if (n > 0) std::memcpy(out, m_.data + first * m_.cols, size_t(n) * size_t(m_.cols) * sizeof(float));
  }

 private:
  MatrixRef m_;
};

void check_width(const RowSource& r, int expected, const char* what,
                 const std::string& checkpoint) {
  if (r.cols() != expected)
    fail(r.path(), ": shape (", r.rows(), ", ", r.cols(), "): expected ", expected,
         " columns, the ", what, " width of the model in ", checkpoint);
}

struct LoadedModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
};

// tf32: only evaluate passes the run's own setting, so that it computes what the run's
// evaluation computed; embedding for embed and retrieve stays FP32.
LoadedModel load_model(const OpenedCheckpoint& checkpoint, const ModelDims& d,
                       const std::string& device, std::ostream& log, bool tf32 = false) {
  LoadedModel m;
  m.backend = select_backend(from_string<DeviceChoice>(device, "device"), log, tf32);
  m.model = std::make_unique<Model>(*m.backend, d);
  load_model_parameters(*m.model, checkpoint);
  log << "model: " << checkpoint.path << " (text " << d.text_dim << ", image " << d.image_dim
      << ", embed " << d.embed_dim << ", z " << d.z_dim << ", gf " << d.gf_dim << ")\n";
  return m;
}

// The embedding passes of inference: the shared Encoder (encoder.h), fed from .npy files.
// Every buffer is allocated once up front: a device block for the inputs and the kept query
// embeddings (and, off the CPU, host staging), plus the encoder's own noise and scratch.
class FileEncoder {
 public:
  // text_rows: rows per query block (0: no texts); image_rows: rows per image chunk (0: no
  // images); kept_queries: query embedding rows kept on the device.
  FileEncoder(Backend& be, const Model& model, int text_rows, int image_rows, int kept_queries)
      : be_(be), d_(model.dims()), encoder_(be, model, text_rows, image_rows) {
    const int e = d_.embed_dim;
    auto bytes = [](int64_t rows, int64_t cols) { return align_up(size_t(rows) * cols * sizeof(float)); };
    block_ = std::make_unique<DeviceBlock>(be_, bytes(text_rows, d_.text_dim) +
                                                    bytes(image_rows, d_.image_dim) +
                                                    bytes(kept_queries, e) + 4 * kAllocAlignment);
    texts_ = block_->take(text_rows, d_.text_dim);
    images_ = block_->take(image_rows, d_.image_dim);
    queries_ = block_->take(kept_queries, e);
    if (be_.device() != Device::CPU) {
      // Host staging for reads and downloads; on the CPU the device buffers are host memory.
      host_in_.resize(std::max(size_t(text_rows) * d_.text_dim, size_t(image_rows) * d_.image_dim));
      host_out_.resize(size_t(std::max(text_rows, image_rows)) * e);
    }
  }

  size_t buffer_bytes() const { return block_->size_bytes() + encoder_.buffer_bytes(); }
  size_t scratch_bytes() const { return encoder_.scratch_bytes(); }
  size_t host_bytes() const { return (host_in_.size() + host_out_.size()) * sizeof(float); }
  bool allocated_once() const { return encoder_.allocated_once(); }
  Tensor queries() const { return queries_; }

  // The queries of text rows [block * kQueryBlockRows, + n) into out (n x E).
  // noise_key: query_noise_key(seed, the model's rounds).
  void embed_text_block(RowSource& texts, int64_t block, int n, int samples, uint64_t noise_key,
                        Tensor out) {
    Tensor text = texts_.row_block(0, n);
    read_into(texts, block * kQueryBlockRows, n, text);
    encoder_.embed_queries(text, block, samples, noise_key, out);
  }

  // CSEM embeddings of image rows [first, first + n), n x E; valid until the next call.
  Tensor embed_image_chunk(RowSource& images, int64_t first, int n) {
    Tensor v = images_.row_block(0, n);
    read_into(images, first, n, v);
    return encoder_.embed_images(v);
  }

  // The values of a contiguous device tensor on the host (the tensor itself on the CPU).
  const float* to_host(const Tensor& t) {
    ZS_CHECK(t.contiguous(), "to_host of a strided tensor");
    if (be_.device() == Device::CPU) return t.data;
    ZS_CHECK(t.numel() <= host_out_.size(), "host staging of ", t.numel(), " values");
    be_.download(t, host_out_.data());
    return host_out_.data();
  }

 private:
  // Rows [first, first + n) of `r` into dst (n rows, contiguous), checked to be finite.
  void read_into(RowSource& r, int64_t first, int n, Tensor dst) {
    const bool direct = be_.device() == Device::CPU;
    float* host = direct ? dst.data : host_in_.data();
    r.read_rows(first, n, host);
    const size_t count = size_t(n) * size_t(r.cols());
    for (size_t i = 0; i < count; ++i)
      if (!std::isfinite(host[i]))
        fail(r.path(), ": row ", first + int64_t(i / r.cols()), ", column ", i % r.cols(),
             " holds ", host[i], ": features must be finite");
    if (!direct) be_.upload(dst, host);
  }

  Backend& be_;
  ModelDims d_;
  Encoder encoder_;
  std::unique_ptr<DeviceBlock> block_;
  Tensor texts_;    // (text_rows, Dt)
  Tensor images_;   // (image_rows, Dv)
  Tensor queries_;  // (kept_queries, E)
  std::vector<float> host_in_, host_out_;
};

void log_memory(std::ostream& log, const Model& model, const FileEncoder& enc, const Backend& be) {
  log << "memory: model " << fixed1(mib(model.bytes())) << " MiB, buffers "
      << fixed1(mib(enc.buffer_bytes())) << " MiB, scratch " << fixed1(mib(enc.scratch_bytes()))
      << " MiB on " << device_name(be.device());
  if (enc.host_bytes() > 0) log << ", host staging " << fixed1(mib(enc.host_bytes())) << " MiB";
  log << "\n";
}

// Logs progress about ten times over a long loop, and at its end.
class Progress {
 public:
  Progress(std::ostream& log, const char* what, int64_t total, int64_t step)
      : log_(log), what_(what), total_(total), t0_(Clock::now()) {
    const int64_t steps = (total + step - 1) / std::max<int64_t>(step, 1);
    every_ = std::max<int64_t>(1, steps / 10);
  }
  void done(int64_t rows) {
    ++calls_;
    if (rows != total_ && calls_ % every_ != 0) return;
    const double s = seconds_since(t0_);
    log_ << what_ << ": " << rows << " / " << total_ << " rows, " << fixed1(s) << " s";
    if (s > 0) log_ << " (" << static_cast<int64_t>(rows / s) << " rows/s)";
    log_ << "\n" << std::flush;
  }

 private:
  std::ostream& log_;
  const char* what_;
  int64_t total_, every_ = 1, calls_ = 0;
  Clock::time_point t0_;
};

// ---- embed's output folder: written aside, then renamed into place ----

// embed's output folder, checked before any work: it is replaced as a whole, so it may hold
// only the files this embed writes (an embeddings file it would not write again is refused
// rather than lost).
fs::path output_folder(const std::string& out_dir, bool texts, bool images) {
  if (out_dir.empty()) fail("embed: no output folder given");
  fs::path target = fs::path(out_dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  if (target.filename().empty() || target.filename() == "." || target.filename() == "..")
    fail(out_dir, ": not a valid output folder name");
  check_folder_replaceable(target, out_dir, [&](const std::string& name) -> std::string {
    if ((name == kTextEmbeddings && texts) || (name == kImageEmbeddings && images)) return "";
    if (name == kTextEmbeddings || name == kImageEmbeddings)
      return "holds " + in_quotes(name) + " from an earlier embed, which this one (without --" +
             (images ? "texts" : "images") + ") would remove";
    return "holds " + in_quotes(name) + ", which embed does not write";
  });
  return target;
}

// ---- R.json ----

std::string retrieval_json(const TopKLists& lists, int64_t gallery_rows) {
  std::string s;
  s.reserve(64 + static_cast<size_t>(lists.n_queries) * (48 + size_t(lists.k) * 24));
  s += "{\"top_k\": " + std::to_string(lists.k) + ", \"gallery_rows\": " +
       std::to_string(gallery_rows) + ", \"queries\": [";
  char buf[32];
  for (int64_t q = 0; q < lists.n_queries; ++q) {
    s += q ? ",\n  " : "\n  ";
    s += "{\"query\": " + std::to_string(q) + ", \"indices\": [";
    for (int j = 0; j < lists.k; ++j) {
      if (j) s += ", ";
      s += std::to_string(lists.index[size_t(q) * lists.k + j]);
    }
    s += "], \"scores\": [";
    for (int j = 0; j < lists.k; ++j) {
      if (j) s += ", ";
      // 9 significant digits: the float32 score reads back exactly.
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(lists.score[size_t(q) * lists.k + j]));
      s += buf;
    }
    s += "]}";
  }
  s += lists.n_queries ? "\n]}\n" : "]}\n";
  return s;
}

using RowSink = std::function<void(const float* values, int rows)>;

// The queries of every row of `texts`, block by block, in order, into `sink`.
void embed_text_rows(FileEncoder& enc, RowSource& texts, int samples, uint64_t noise_key,
                     const RowSink& sink, std::ostream& log) {
  const int64_t n = texts.rows();
  Progress progress(log, "texts", n, kQueryBlockRows);
  for (int64_t b = 0; b * kQueryBlockRows < n; ++b) {
    const int rows = int(std::min<int64_t>(kQueryBlockRows, n - b * kQueryBlockRows));
    Tensor q = enc.queries().row_block(0, rows);
    enc.embed_text_block(texts, b, rows, samples, noise_key, q);
    sink(enc.to_host(q), rows);
    progress.done(b * kQueryBlockRows + rows);
  }
}

// The CSEM embeddings of every row of `images`, image_rows rows per pass, into `sink`.
void embed_image_rows(FileEncoder& enc, RowSource& images, int image_rows, const RowSink& sink,
                      std::ostream& log) {
  const int64_t m = images.rows();
  Progress progress(log, "images", m, image_rows);
  for (int64_t first = 0; first < m; first += image_rows) {
    const int rows = int(std::min<int64_t>(image_rows, m - first));
    sink(enc.to_host(enc.embed_image_chunk(images, first, rows)), rows);
    progress.done(first + rows);
  }
}

void check_retrieve_inputs(const RowSource& texts, const RowSource& gallery, int top_k,
                           const ModelDims& d, const std::string& checkpoint) {
  check_width(texts, d.text_dim, "text", checkpoint);
  check_width(gallery, d.image_dim, "image", checkpoint);
  if (texts.rows() > INT_MAX)
    fail(texts.path(), ": ", texts.rows(), " texts; at most ", INT_MAX, " queries per run");
  if (top_k > gallery.rows())
    fail(gallery.path(), ": top_k ", top_k, " exceeds the gallery's ", gallery.rows(), " rows");
}

struct Retrieved {
  TopKLists lists;
  bool allocated_once = true;
};

// The top_k gallery rows of every text's query: the gallery streamed in chunks of chunk_rows,
// each chunk's lists merged into the running ones. Inputs checked by check_retrieve_inputs.
Retrieved retrieve_rows(Backend& be, const Model& model, RowSource& texts, RowSource& gallery,
                        int k, int samples, uint64_t noise_key, int64_t chunk_rows, std::ostream& log) {
  check_top_k_supported(be, k);  // before any query is encoded
  const int n_q = int(texts.rows());
  const int64_t m = gallery.rows();
  const int text_rows = int(std::min<int64_t>(kQueryBlockRows, n_q));
  const int chunk = int(std::min<int64_t>(chunk_rows, m));
  FileEncoder enc(be, model, text_rows, chunk, n_q);
  TopKLists running = make_topk_lists(n_q, k);
  std::vector<int64_t> chunk_index(size_t(n_q) * k);
  std::vector<float> chunk_score(size_t(n_q) * k);
  log_memory(log, model, enc, be);

  const Tensor queries = enc.queries();
  {
    Progress progress(log, "queries", n_q, kQueryBlockRows);
    for (int64_t b = 0; b * kQueryBlockRows < n_q; ++b) {
      const int first = int(b * kQueryBlockRows);
      const int rows = std::min(kQueryBlockRows, n_q - first);
      enc.embed_text_block(texts, b, rows, samples, noise_key, queries.row_block(first, rows));
      progress.done(first + rows);
    }
  }
  Progress progress(log, "gallery", m, chunk);
  for (int64_t first = 0; first < m; first += chunk) {
    const int rows = int(std::min<int64_t>(chunk, m - first));
    const Tensor g = enc.embed_image_chunk(gallery, first, rows);
    if (n_q > 0) {
      // A last chunk shorter than k yields fewer candidates per query: pad its lists with
      // entries that never win (score -inf) so that every merged list has k entries.
      const int kc = std::min(k, rows);
      be.topk_cosine(queries, g, kc, first, chunk_index.data(), chunk_score.data());
      if (kc < k) {
        for (int64_t q = n_q - 1; q >= 0; --q)
          for (int j = k - 1; j >= 0; --j) {
            const size_t to = size_t(q) * k + j;
            const bool real = j < kc;
            chunk_index[to] = real ? chunk_index[size_t(q) * kc + j] : -1;
            chunk_score[to] = real ? chunk_score[size_t(q) * kc + j] : -INFINITY;
          }
      }
      merge_topk(running, chunk_index.data(), chunk_score.data());
    }
    progress.done(first + rows);
  }
  for (size_t i = 0; i < running.index.size(); ++i)
    ZS_CHECK(running.index[i] >= 0 && running.index[i] < m, "retrieved index ",
             running.index[i], " outside the gallery of ", m, " rows");
  return {std::move(running), enc.allocated_once()};
}

void check_dataset_fits(const ModelDims& d, const Dataset& data, const std::string& checkpoint,
                        const std::string& dataset_name) {
  if (data.text_features.cols != d.text_dim || data.image_features.cols != d.image_dim)
    fail(checkpoint, ": the model takes texts of width ", d.text_dim, " and images of width ",
         d.image_dim, "; the dataset '", dataset_name, "' has ", data.text_features.cols, " and ",
         data.image_features.cols);
}

// Training's Evaluator over every row of `data`, with cfg's top_k, ap_divisor and seed, for a
// model trained `round` rounds.
EvalResult evaluate_dataset(Backend& be, const Model& model, const Dataset& data,
                            const Config& cfg, int64_t round) {
  const ModelDims d = model.dims();
  DeviceBlock block(be, align_up(data.text_features.data.size() * sizeof(float)) +
                            align_up(data.image_features.data.size() * sizeof(float)) +
                            2 * kAllocAlignment);
  Tensor texts = block.take(static_cast<int>(data.text_features.rows), d.text_dim);
  Tensor images = block.take(static_cast<int>(data.image_features.rows), d.image_dim);
  be.upload(texts, data.text_features.data.data());
  be.upload(images, data.image_features.data.data());
  Evaluator evaluator(be, model, data, texts, images, cfg.top_k, cfg.ap_divisor,
                      cfg.seed);
  return evaluator.evaluate(round);
}

}  // namespace

void run_embed(const EmbedOptions& o, std::ostream& log) {
  check_common_options("embed", o.checkpoint, o.samples, o.chunk_rows);
  if (o.texts.empty() && o.images.empty()) fail("embed: nothing to embed: give texts, images or both");
  const fs::path target = output_folder(o.out_dir, !o.texts.empty(), !o.images.empty());
  const OpenedCheckpoint checkpoint = open_checkpoint(o.checkpoint);
  const ModelDims d = checkpoint_dims(checkpoint);
  const int64_t round = checkpoint_rounds_trained(checkpoint);
  std::optional<NpyRows> texts, images;
  if (!o.texts.empty()) {
    texts.emplace(o.texts);
    check_width(*texts, d.text_dim, "text", o.checkpoint);
  }
  if (!o.images.empty()) {
    images.emplace(o.images);
    check_width(*images, d.image_dim, "image", o.checkpoint);
  }
  LoadedModel lm = load_model(checkpoint, d, o.device, log);
  Backend& be = *lm.backend;
  const int text_rows = texts ? int(std::min<int64_t>(kQueryBlockRows, texts->rows())) : 0;
  const int image_rows = images ? int(std::min<int64_t>(o.chunk_rows, images->rows())) : 0;
  FileEncoder enc(be, *lm.model, text_rows, image_rows, text_rows);
  log_memory(log, *lm.model, enc, be);

  CreatedParents parents(target, target.string());  // removed again if the embed fails
  fs::path tmp;
  try {
    tmp = create_folder_beside(target, target.string());
    if (texts) {
      NpyRowWriter out((tmp / kTextEmbeddings).string(), texts->rows(), d.embed_dim);
      embed_text_rows(enc, *texts, o.samples, query_noise_key(o.seed, round),
                      [&](const float* v, int rows) { out.write_rows(v, rows); }, log);
      out.finish();
    }
    if (images) {
      NpyRowWriter out((tmp / kImageEmbeddings).string(), images->rows(), d.embed_dim);
      embed_image_rows(enc, *images, image_rows,
                       [&](const float* v, int rows) { out.write_rows(v, rows); }, log);
      out.finish();
    }
    move_folder_into_place(tmp, target, target.string());
  } catch (...) {
    std::error_code ignored;
    if (!tmp.empty()) fs::remove_all(tmp, ignored);
    parents.remove_if_empty();
    throw;
  }
  if (!enc.allocated_once()) log << "note: scratch memory grew past its start-up size\n";
  if (texts)
    log << "wrote " << (target / kTextEmbeddings).string() << " (" << texts->rows() << " x "
        << d.embed_dim << ", " << o.samples << (o.samples == 1 ? " sample" : " samples")
        << " per text, seed " << o.seed << ", round " << round << ")\n";
  if (images)
    log << "wrote " << (target / kImageEmbeddings).string() << " (" << images->rows() << " x "
        << d.embed_dim << ")\n";
}

void run_retrieve(const RetrieveOptions& o, std::ostream& log) {
  check_common_options("retrieve", o.checkpoint, o.samples, o.chunk_rows);
  if (o.texts.empty()) fail("retrieve: no texts given");
  if (o.gallery.empty()) fail("retrieve: no gallery given");
  if (o.out.empty()) fail("retrieve: no output file given");
  if (o.top_k < 1) fail("retrieve: top_k must be at least 1, got ", o.top_k);
  {
    // Checked before any work: the file is written only once every query is answered.
    const fs::path parent = fs::path(o.out).parent_path();
    std::error_code ec;
    if (!parent.empty() && !fs::is_directory(parent, ec))
      fail(o.out, fs::exists(parent, ec) ? ": " + in_quotes(parent.string()) + " is not a folder"
                                         : ": the folder " + in_quotes(parent.string()) + " does not exist");
    if (fs::is_directory(o.out, ec))
      fail(o.out, ": is a folder; --out names the JSON file to write");
  }
  const OpenedCheckpoint checkpoint = open_checkpoint(o.checkpoint);
  const ModelDims d = checkpoint_dims(checkpoint);
  const int64_t round = checkpoint_rounds_trained(checkpoint);
  NpyRows texts(o.texts);
  check_width(texts, d.text_dim, "text", o.checkpoint);
  NpyRows gallery(o.gallery);
  check_retrieve_inputs(texts, gallery, o.top_k, d, o.checkpoint);

  LoadedModel lm = load_model(checkpoint, d, o.device, log);
  const auto t0 = Clock::now();
  const Retrieved r = retrieve_rows(*lm.backend, *lm.model, texts, gallery, o.top_k, o.samples,
                                    query_noise_key(o.seed, round), o.chunk_rows, log);
  write_file_atomic(o.out, retrieval_json(r.lists, gallery.rows()));
  if (!r.allocated_once) log << "note: scratch memory grew past its start-up size\n";
  log << "retrieved the top " << o.top_k << " of " << gallery.rows() << " gallery rows for "
      << texts.rows() << " queries (" << o.samples << (o.samples == 1 ? " sample" : " samples")
      << " per text, seed " << o.seed << ", round " << round << ") in " << fixed1(seconds_since(t0))
      << " s; wrote "
      << o.out << "\n";
}

namespace {
// The config keys an evaluation reads: those that name and build its dataset
// (load_configured_dataset) and those evaluate_dataset passes to the Evaluator, with tf32 for
// load_model. The model itself is the checkpoint's, so any other key would change nothing.
bool evaluation_reads_key(const std::string& key) {
  for (const char* k : {"dataset", "datasets_root", "top_k", "ap_divisor", "seed", "tf32"})
    if (key == k) return true;
  return key.rfind("synthetic.", 0) == 0;
}
}  // namespace

EvalResult run_evaluate(const EvaluateOptions& o, std::ostream& out) {
  if (o.checkpoint.empty()) fail("evaluate: no checkpoint given");
  // The checkpoint is read once; a config file given instead is read first, as before.
  Config cfg;
  OpenedCheckpoint checkpoint;
  if (o.config.empty()) {
    checkpoint = open_checkpoint(o.checkpoint);
    cfg = checkpoint_config(checkpoint, o.overrides);
  } else {
    cfg = load_config(o.config, o.overrides);
    checkpoint = open_checkpoint(o.checkpoint);
  }
  // Parsed first, so that an unknown key or a bad value is named as such.
  for (const std::string& kv : o.overrides) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    if (key == "device") fail("evaluate: --set ", in_quotes(kv), ": the device is chosen with --device");
    if (!evaluation_reads_key(key))
      fail("evaluate: --set ", in_quotes(kv), ": evaluation does not read ", in_quotes(key),
           " (the model is the checkpoint's); it reads dataset, datasets_root, synthetic.*, "
           "top_k, ap_divisor, seed and tf32");
  }
  if (!o.config.empty()) {
    // The file may come from another run (it is given for its dataset): say which of its
    // model and training keys differ from the checkpoint's, since they change nothing here.
    const nlohmann::json mine = nlohmann::json::parse(config_to_json(cfg));
    const nlohmann::json trained = nlohmann::json::parse(config_to_json(checkpoint_config(checkpoint)));
    std::string unused;
    for (auto it = mine.begin(); it != mine.end(); ++it) {
      const std::string& key = it.key();
      if (key == "synthetic" || evaluation_reads_key(key) || config_key_resumable(key)) continue;
      if (!trained.contains(key) || trained[key] != it.value()) unused += (unused.empty() ? "" : ", ") + key;
    }
    if (!unused.empty())
      out << "note: " << o.config << ": " << unused
          << " differ from the checkpoint's and are not used: the model is the checkpoint's\n";
  }
  const ModelDims d = checkpoint_model_dims(checkpoint);
  const Dataset data = load_configured_dataset(cfg);
  check_dataset_fits(d, data, o.checkpoint, cfg.dataset);
  LoadedModel lm = load_model(checkpoint, d, o.device, out, cfg.tf32);
  const EvalResult r =
      evaluate_dataset(*lm.backend, *lm.model, data, cfg, checkpoint_rounds_trained(checkpoint));
  const nlohmann::json line = {{"k", r.k}, {"prec_at_k", r.prec_at_k}, {"map_at_k", r.map_at_k},
                               {"top1", r.top1}, {"queries", r.query_labels.size()},
                               {"gallery", r.gallery_labels.size()}};
  out << line.dump() << "\n";
  return r;
}

// ---- a model held in memory -----------------------------------------------------------------

struct InferenceModel::Impl {
  std::string checkpoint;
  Config config;
  ModelDims dims;
  int64_t rounds_trained = 0;  // keys the evaluation noise, with the seed
  LoadedModel loaded;
};

InferenceModel::InferenceModel(const std::string& checkpoint, const std::string& device,
                               std::ostream& log)
    : impl_(std::make_unique<Impl>()) {
  if (checkpoint.empty()) fail("load: no checkpoint given");
  const OpenedCheckpoint opened = open_checkpoint(checkpoint);
  impl_->checkpoint = checkpoint;
  impl_->config = checkpoint_config(opened);
  impl_->dims = checkpoint_model_dims(opened);
  impl_->rounds_trained = checkpoint_rounds_trained(opened);
  impl_->loaded = load_model(opened, impl_->dims, device, log);
}

InferenceModel::~InferenceModel() = default;

const ModelDims& InferenceModel::dims() const { return impl_->dims; }
const Config& InferenceModel::config() const { return impl_->config; }
const std::string& InferenceModel::checkpoint() const { return impl_->checkpoint; }
std::string InferenceModel::device_description() const {
  return impl_->loaded.backend->description();
}

void InferenceModel::embed_texts(const MatrixRef& texts, int samples, uint64_t seed,
                                 float* out) const {
  check_common_options("embed_texts", impl_->checkpoint, samples, 1);
  ArrayRows rows(texts);
  check_width(rows, impl_->dims.text_dim, "text", impl_->checkpoint);
  if (rows.rows() == 0) return;
  const int text_rows = int(std::min<int64_t>(kQueryBlockRows, rows.rows()));
  Backend& be = *impl_->loaded.backend;
  FileEncoder enc(be, *impl_->loaded.model, text_rows, 0, text_rows);
  std::ostream quiet(nullptr);
  const size_t e = size_t(impl_->dims.embed_dim);
  embed_text_rows(enc, rows, samples, query_noise_key(seed, impl_->rounds_trained),
                  [&](const float* v, int n) {
    std::memcpy(out, v, size_t(n) * e * sizeof(float));
    out += size_t(n) * e;
  }, quiet);
}

void InferenceModel::embed_images(const MatrixRef& images, int64_t chunk_rows, float* out) const {
  check_common_options("embed_images", impl_->checkpoint, 1, chunk_rows);
  ArrayRows rows(images);
  check_width(rows, impl_->dims.image_dim, "image", impl_->checkpoint);
  if (rows.rows() == 0) return;
  const int image_rows = int(std::min<int64_t>(chunk_rows, rows.rows()));
  Backend& be = *impl_->loaded.backend;
  FileEncoder enc(be, *impl_->loaded.model, 0, image_rows, 0);
  std::ostream quiet(nullptr);
  const size_t e = size_t(impl_->dims.embed_dim);
  embed_image_rows(enc, rows, image_rows, [&](const float* v, int n) {
    std::memcpy(out, v, size_t(n) * e * sizeof(float));
    out += size_t(n) * e;
  }, quiet);
}

TopKLists InferenceModel::retrieve(const MatrixRef& texts, const MatrixRef& gallery, int top_k,
                                   int samples, uint64_t seed, int64_t chunk_rows) const {
  check_common_options("retrieve", impl_->checkpoint, samples, chunk_rows);
  if (top_k < 1) fail("retrieve: top_k must be at least 1, got ", top_k);
  ArrayRows t(texts), g(gallery);
  check_retrieve_inputs(t, g, top_k, impl_->dims, impl_->checkpoint);
  std::ostream quiet(nullptr);
  return retrieve_rows(*impl_->loaded.backend, *impl_->loaded.model, t, g, top_k, samples,
                       query_noise_key(seed, impl_->rounds_trained), chunk_rows, quiet)
      .lists;
}

EvalResult InferenceModel::evaluate(const Dataset& data) const {
  validate_dataset(data, "the given dataset");
  check_dataset_fits(impl_->dims, data, impl_->checkpoint, data.name);
  return evaluate_dataset(*impl_->loaded.backend, *impl_->loaded.model, data, impl_->config,
                          impl_->rounds_trained);
}

}  // namespace zscrgan
