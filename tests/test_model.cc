// The names the model gives its tensors: checkpoints store them, and model.h documents them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/model.h"

namespace zscrgan {
namespace {

TEST(Model, TensorNamesAreTheOnesCheckpointsAndDocsUse) {
  auto be = make_cpu_backend();
  ModelDims d;
  d.text_dim = 6, d.image_dim = 5, d.embed_dim = 3, d.z_dim = 2, d.gf_dim = 4, d.df_dim = 3;
  Model m(*be, d);
  std::vector<std::string> params, state;
  for (const NamedTensor& t : m.parameter_tensors()) params.push_back(t.name);
  for (const NamedTensor& t : m.state_tensors()) state.push_back(t.name);
  const std::vector<std::string> want_params = {
      "critic.fc1.w",         "critic.fc1.b",         "critic.fc2.w",   "critic.fc2.b",
      "csem.fc.w",            "csem.fc.b",            "generator.condition.w",
      "generator.condition.b", "generator.fc1.w",     "generator.fc1.b", "generator.fc2.w",
      "generator.fc2.b",      "generator.fc3.w",      "generator.fc3.b"};
  std::vector<std::string> sorted = params;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> want_sorted = want_params;
  std::sort(want_sorted.begin(), want_sorted.end());
  EXPECT_EQ(sorted, want_sorted);
  const std::vector<std::string> want_state = {
      "optimizer.generator.mean_square", "optimizer.critic.mean_square", "optimizer.csem.m", "optimizer.csem.v",
      "optimizer.csem.beta_powers"};
  EXPECT_EQ(state, want_state);
}

}  // namespace
}  // namespace zscrgan
