// The model sizes the benchmarks time: the demo (configs/demo.json) and the published one.
#ifndef ZSCRGAN_BENCH_SIZES_H
#define ZSCRGAN_BENCH_SIZES_H

#include "config/config.h"
#include "data/dataset.h"
#include "data/dataset_source.h"

namespace zscrgan {

struct BenchSize {
  const char* name;
  int text_dim, image_dim, gf, df, embed, z;
};
constexpr BenchSize kDemo{"demo", 64, 128, 256, 128, 64, 32};
constexpr BenchSize kPublished{"published", 1024, 2048, 2048, 1024, 1024, 256};

// The synthetic dataset at the given widths: timing does not depend on the values.
inline Dataset bench_dataset(const BenchSize& s) {
  SyntheticSpec spec;
  spec.seen_classes = 45;
  spec.unseen_classes = 15;
  spec.images_per_class = 20;
  spec.texts_per_class = 2;
  spec.text_dim = s.text_dim;
  spec.image_dim = s.image_dim;
  return make_synthetic_dataset(spec);
}

inline Config bench_config(const BenchSize& s) {
  Config c;
  c.gf_dim = s.gf;
  c.df_dim = s.df;
  c.embed_dim = s.embed;
  c.z_dim = s.z;
  return c;
}

}  // namespace zscrgan

#endif  // ZSCRGAN_BENCH_SIZES_H
