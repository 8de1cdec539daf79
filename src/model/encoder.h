// The one query and gallery embedding path: training's evaluation, `evaluate`, `embed` and
// `retrieve` all embed through an Encoder, with the same evaluation noise.
//
// Queries follow the evaluation of docs/algorithm.md: text -> condition (fresh
// truncated-normal eps) -> generator (fresh normal z) -> CSEM. With samples S > 1 a text's
// query is the mean of S such embeddings, each with its own noise. Gallery images -> CSEM.
// Embeddings are the raw CSEM outputs (retrieval L2-normalises them for the cosine).
//
// Noise is a pure function of (seed, round, text row, sample), drawn from an evaluation stream
// of its own, never from the training stream. `round` is the number of rounds the model has
// trained: each round's evaluation draws fresh eps and z, as the published graph does every
// time it evaluates, so the best Precision@K over rounds is taken over noise draws as well as
// weights, as the paper's is. Text rows are taken in blocks of kQueryBlockRows; with
// key = query_noise_key(seed, round), block b, sample s draws eps (rows x E, truncated normal)
// from query_noise(key, b, s, 0) and z (rows x Z, normal) from query_noise(key, b, s, 1),
// tensor element = row in block * width + column. So a query depends neither on chunk sizes
// nor on the other texts, sample 0 of an S-sample run is the single-sample query, evaluating
// never moves training's noise, and the queries a run evaluated a round's model with are the
// ones `evaluate`, `embed` and `retrieve` draw on that round's checkpoint for the run's seed.
//
// Memory: the noise buffers and the activations' scratch are allocated once, at construction,
// for at most text_rows query rows and image_rows gallery rows per call.
#ifndef ZSCRGAN_ENCODER_H
#define ZSCRGAN_ENCODER_H

#include <cstdint>
#include <memory>

#include "core/splitmix64.h"
#include "backend/arena.h"
#include "backend/backend.h"
#include "model/model.h"
#include "autograd/tape.h"

namespace zscrgan {

constexpr int kQueryBlockRows = 4096;

// The evaluation noise stream of a model trained `round` rounds: keyed apart from the training
// stream of the same seed (which draws from NoiseStream{seed, 0, 1, 2, ...}) and from every
// other round's, so no two share a draw.
constexpr uint64_t kQueryNoiseKey = 0x9E3779B97F4A7C15ull;
constexpr uint64_t query_noise_key(uint64_t seed, int64_t round) {
  return seed ^ kQueryNoiseKey ^ splitmix64(static_cast<uint64_t>(round));
}
inline uint64_t query_noise_offset(int64_t block, int sample, int fill) {
  return (static_cast<uint64_t>(sample) << 32) + 2 * static_cast<uint64_t>(block) +
         static_cast<uint64_t>(fill);
}
inline NoiseStream query_noise(uint64_t key, int64_t block, int sample, int fill) {
  return NoiseStream{key, query_noise_offset(block, sample, fill)};
}

class Encoder {
 public:
  // text_rows: most query rows per call (0: no queries); image_rows: most gallery rows per call.
  Encoder(Backend& be, const Model& model, int text_rows, int image_rows);

  // out (n x E) = the queries of text rows texts (n x Dt, on the backend), which are rows
  // [block * kQueryBlockRows, + n) of the whole text set: the mean over `samples` draws.
  // key: query_noise_key(seed, round).
  void embed_queries(const Tensor& texts, int64_t block, int samples, uint64_t key, Tensor out);
  // The CSEM embeddings of images (n x Dv), n x E; valid until the next call.
  Tensor embed_images(const Tensor& images);

  size_t buffer_bytes() const { return block_->size_bytes(); }
  size_t scratch_bytes() const { return arena_->capacity_bytes(); }
  // The scratch never grew past its start-up size (memory was sized right).
  bool allocated_once() const { return arena_->backend_allocations() == 1; }

 private:
  Backend& be_;
  const Model& model_;
  ModelDims d_;
  int text_rows_, image_rows_;
  std::unique_ptr<DeviceBlock> block_;
  Tensor eps_;  // (text_rows, E)
  Tensor z_;    // (text_rows, Z)
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Tape> tape_;
};

}  // namespace zscrgan

#endif  // ZSCRGAN_ENCODER_H
