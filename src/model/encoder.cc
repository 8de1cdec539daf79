#include "model/encoder.h"

#include <algorithm>

#include "core/error.h"

namespace zscrgan {

Encoder::Encoder(Backend& be, const Model& model, int text_rows, int image_rows)
    : be_(be), model_(model), d_(model.dims()), text_rows_(text_rows), image_rows_(image_rows) {
  const int e = d_.embed_dim;
  auto bytes = [](int64_t rows, int64_t cols) { return align_up(size_t(rows) * cols * sizeof(float)); };
  block_ = std::make_unique<DeviceBlock>(
      be_, bytes(text_rows, e) + bytes(text_rows, d_.z_dim) + 4 * kAllocAlignment);
  eps_ = block_->take(text_rows, e);
  z_ = block_->take(text_rows, d_.z_dim);
  // What the ops allocate per call (forward only, nothing recorded): the condition layer's h
  // and c, the generator's three layers, the CSEM output; or an image chunk's CSEM output.
  const size_t query_pass = bytes(text_rows, 2 * e) + bytes(text_rows, e) +
                            bytes(text_rows, d_.gf_dim) + bytes(text_rows, 2 * d_.gf_dim) +
                            bytes(text_rows, d_.image_dim) + bytes(text_rows, e);
  const size_t image_pass = bytes(image_rows, e);
  arena_ = std::make_unique<Arena>(be_, std::max<size_t>({query_pass, image_pass, kAllocAlignment}));
  tape_ = std::make_unique<Tape>(be_, *arena_);
}

void Encoder::embed_queries(const Tensor& texts, int64_t block, int samples, uint64_t key,
                            Tensor out) {
  const int n = texts.rows;
  ZS_CHECK(n > 0 && n <= text_rows_ && texts.cols == d_.text_dim && out.rows == n &&
               out.cols == d_.embed_dim && samples >= 1,
           "query block of ", n, " x ", texts.cols, " texts into ", out.rows, " x ", out.cols,
           " (room for ", text_rows_, " rows, ", samples, " samples)");
  Tensor eps = eps_.row_block(0, n), z = z_.row_block(0, n);
  Tape::NoRecord no_record(*tape_);
  for (int s = 0; s < samples; ++s) {
    arena_->reset();
    be_.fill_truncated_normal(eps, query_noise(key, block, s, 0));
    be_.fill_normal(z, query_noise(key, block, s, 1));
    Conditioned cd = condition_forward(*tape_, frozen(model_.condition), constant(texts), eps);
    Var x = generator_forward(*tape_, frozen(model_.gen1), frozen(model_.gen2),
                              frozen(model_.gen3), cd.c, constant(z));
    Var q = csem_forward(*tape_, frozen(model_.csem), x);
    if (samples == 1) {
      be_.copy(out, q.value);
    } else {
      if (s == 0) be_.fill(out, 0.f);
      be_.axpy(out, 1.f / static_cast<float>(samples), q.value);
    }
  }
  arena_->reset();
}

Tensor Encoder::embed_images(const Tensor& images) {
  ZS_CHECK(images.rows > 0 && images.rows <= image_rows_ && images.cols == d_.image_dim,
           "image chunk of ", images.rows, " x ", images.cols, ", room for ", image_rows_, " rows");
  arena_->reset();
  Tape::NoRecord no_record(*tape_);
  return csem_forward(*tape_, frozen(model_.csem), constant(images)).value;
}

}  // namespace zscrgan
