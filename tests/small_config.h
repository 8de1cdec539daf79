// A configuration small enough for a whole round to take milliseconds on the CPU: the
// synthetic dataset at 8 seen / 4 unseen classes and networks a few dozen units wide.
#ifndef ZSCRGAN_TESTS_SMALL_CONFIG_H
#define ZSCRGAN_TESTS_SMALL_CONFIG_H

#include "config/config.h"

namespace zscrgan::testing {

inline Config small_config(uint64_t seed, int e_step_iters = 6, int m_step_iters = 6) {
  Config c;
  c.gf_dim = 32;
  c.df_dim = 16;
  c.embed_dim = 8;
  c.z_dim = 4;
  c.e_step_iters = e_step_iters;
  c.m_step_iters = m_step_iters;
  c.seed = seed;
  c.top_k = 10;
  c.synthetic.seen_classes = 8;
  c.synthetic.unseen_classes = 4;
  c.synthetic.images_per_class = 15;
  c.synthetic.text_dim = 12;
  c.synthetic.image_dim = 16;
  return c;
}

}  // namespace zscrgan::testing

#endif  // ZSCRGAN_TESTS_SMALL_CONFIG_H
