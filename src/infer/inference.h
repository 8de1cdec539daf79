// Using a trained model: embedding texts and images, and text-to-image retrieval over galleries
// of any size.
//
// Queries and gallery embeddings come from the Encoder (encoder.h), the path training's
// evaluation takes too: for the same seed, `embed` and `retrieve` on a round's checkpoint draw
// the queries the run evaluated that round with (the noise is keyed by the seed and the
// checkpoint's rounds), and `retrieve` uses exactly the queries `embed` writes.
//
// Arithmetic is float32 in embed and retrieve (on CUDA, TF32 stays off whatever the training config
// said: retrieval ranks by small differences of cosine similarity); evaluate follows the run.
//
// Memory: the buffers are allocated once, before the first block, sized by chunk_rows (gallery
// or image rows per pass) and the query count (a note is logged if the encoder's scratch had to
// grow); a gallery is streamed from its .npy file in chunks, so memory does not grow with the
// gallery.
#ifndef ZSCRGAN_INFERENCE_H
#define ZSCRGAN_INFERENCE_H

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "eval/evaluation.h"
#include "eval/retrieval.h"

namespace zscrgan {

struct EmbedOptions {
  std::string checkpoint;  // a checkpoint written by training
  std::string texts;       // N x Dt .npy (float32 or float64); "" to skip
  std::string images;      // M x Dv .npy; "" to skip
  std::string out_dir;     // receives text_embeddings.npy (N x E) and image_embeddings.npy (M x E)
  int samples = 1;         // generated queries averaged per text
  uint64_t seed = 0;
  std::string device = "auto";  // auto | cpu | cuda
  int64_t chunk_rows = 65536;   // image rows per pass
};

// Writes the embeddings, float32 .npy, into a temporary sibling of out_dir renamed into place
// (an existing out_dir holding only these files is replaced; anything else there is refused).
// Progress and a summary go to `log`. Throws Error naming the file on bad input.
void run_embed(const EmbedOptions& opts, std::ostream& log);

struct RetrieveOptions {
  std::string checkpoint;
  std::string texts;    // N x Dt .npy: one query per row
  std::string gallery;  // M x Dv .npy, streamed
  std::string out;      // R.json
  int top_k = 50;
  int samples = 1;
  uint64_t seed = 0;
  std::string device = "auto";
  int64_t chunk_rows = 65536;  // gallery rows per pass
};

// For every text, the top_k gallery rows of highest cosine similarity between its query and
// the rows' CSEM embeddings, best first, ties to the lower row. Writes, atomically,
// {"top_k": K, "gallery_rows": M,
//  "queries": [{"query": i, "indices": [...], "scores": [...]}, ...]}.
void run_retrieve(const RetrieveOptions& opts, std::ostream& log);

struct EvaluateOptions {
  std::string checkpoint;
  std::string config;                  // "": the checkpoint's own configuration
  std::vector<std::string> overrides;  // "key=value", as --set
  std::string device = "auto";
};

// Precision@K, mAP@K and Top-1 of a checkpoint's model on its configuration's dataset (or the
// given one), through the same Evaluator training uses, with the run's tf32 setting (which only
// CUDA GEMMs use): on a run's checkpoint and the same device it reproduces the metrics that run
// logged for that round. Prints the device and model lines, then the metrics as one JSON line, numbers
// written as metrics.jsonl writes them.
EvalResult run_evaluate(const EvaluateOptions& opts, std::ostream& out);

// A dense row-major float32 matrix held by the caller (read in place, never copied whole);
// `name` stands for it in messages as a file's path does.
struct MatrixRef {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  std::string name;
};

// A checkpoint's model loaded once for calls on arrays in memory: the very passes of
// run_embed, run_retrieve and run_evaluate (same Encoder, query noise, chunked retrieval and
// Evaluator), fed from MatrixRef instead of .npy files, with the same checks and messages.
class InferenceModel {
 public:
  // Selects the backend (auto | cpu | cuda; never TF32) and loads the parameters; log gets the
  // model line, and the device line when the device is auto.
  InferenceModel(const std::string& checkpoint, const std::string& device, std::ostream& log);
  ~InferenceModel();
  InferenceModel(const InferenceModel&) = delete;
  InferenceModel& operator=(const InferenceModel&) = delete;

  const ModelDims& dims() const;
  const Config& config() const;  // the checkpoint's configuration
  const std::string& checkpoint() const;
  std::string device_description() const;

  // texts.rows x embed_dim query embeddings into out (what embed writes for the same rows).
  void embed_texts(const MatrixRef& texts, int samples, uint64_t seed, float* out) const;
  // images.rows x embed_dim CSEM embeddings into out, chunk_rows rows per pass.
  void embed_images(const MatrixRef& images, int64_t chunk_rows, float* out) const;
  // What run_retrieve writes for the same rows and options.
  TopKLists retrieve(const MatrixRef& texts, const MatrixRef& gallery, int top_k, int samples,
                     uint64_t seed, int64_t chunk_rows) const;
  // Precision@K, mAP@K and Top-1 on `data` with the checkpoint's top_k, ap_divisor and seed
  // (run_evaluate's numbers when data is the run's dataset). Validates data first.
  EvalResult evaluate(const Dataset& data) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_INFERENCE_H
