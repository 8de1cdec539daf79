// Using a trained model: embedding texts and images, and text-to-image retrieval over galleries
// of any size.
//
// Queries follow the evaluation of docs/algorithm.md: text -> condition (fresh
// truncated-normal eps) -> generator (fresh normal z) -> CSEM. With samples S > 1 a text's
// query is the mean of S such embeddings, each with its own noise: one draw of the noise is a
// random variable, the mean of S has 1/S of its variance. Gallery images -> CSEM. Embeddings
// are the raw CSEM outputs (retrieval L2-normalises them for the cosine).
//
// Noise is a pure function of (seed, text row, sample): text rows are taken in blocks of
// kQueryBlockRows; the noise of block b, sample s comes from two fills of that block's rows
// (tensor element = row in block * width + column), eps (truncated normal, rows x E) from
// NoiseStream{seed, query_noise_offset(b, s, 0)} and z (normal, rows x Z) from
// NoiseStream{seed, query_noise_offset(b, s, 1)}. So a query does not depend on chunk sizes
// or on the other texts, sample 0 of an S-sample run is the single-sample query, and
// `retrieve` uses exactly the queries `embed` writes for the same seed and samples.
//
// Arithmetic is float32 throughout (on CUDA, TF32 stays off whatever the training config said):
// retrieval ranks by small differences of cosine similarity.
//
// Memory: everything is allocated once, before the first block, sized by chunk_rows (gallery
// or image rows per pass) and the query count; a gallery is streamed from its .npy file in
// chunks, so memory does not grow with the gallery.
#ifndef ZSCRGAN_INFERENCE_H
#define ZSCRGAN_INFERENCE_H

#include <cstdint>
#include <iosfwd>
#include <string>

namespace zscrgan {

constexpr int kQueryBlockRows = 4096;

inline uint64_t query_noise_offset(int64_t block, int sample, int fill) {
  return (static_cast<uint64_t>(sample) << 32) + 2 * static_cast<uint64_t>(block) +
         static_cast<uint64_t>(fill);
}

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

}  // namespace zscrgan

#endif  // ZSCRGAN_INFERENCE_H
