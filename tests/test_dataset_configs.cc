// The configs of the paper's seven datasets: each parses, holds the published hyper-parameters,
// and is listed in configs/DATASETS.md with the folder it names.
#include <gtest/gtest.h>

#include <string>

#include "data_test_util.h"
#include "config/config.h"

namespace {

TEST(DatasetConfigs, EachOfThePapersDatasetsHasOneWithThePublishedDefaults) {
  const std::string root = ZSCRGAN_SOURCE_DIR;
  const std::string table = zscrgan_test::read_bytes(root + "/configs/DATASETS.md");
  ASSERT_FALSE(table.empty());
  for (const std::string name : {"awa1", "awa2", "cub", "flo", "nab_scs", "nab_sce", "wiki"}) {
    SCOPED_TRACE(name);
    const zscrgan::Config c = zscrgan::load_config(root + "/configs/" + name + ".json");
    EXPECT_EQ(c.batch_size, 32);
    EXPECT_EQ(c.gf_dim, 2048);
    EXPECT_EQ(c.df_dim, 1024);
    EXPECT_EQ(c.embed_dim, 1024);
    EXPECT_EQ(c.z_dim, 256);
    EXPECT_EQ(c.CSEM_lr, 0.002);
    EXPECT_EQ(c.generator_lr, 0.0002);
    EXPECT_EQ(c.discriminator_lr, 0.0002);
    EXPECT_EQ(c.kl_div_coefficient, 1.0);
    EXPECT_EQ(c.mm_reg_coeff, 2.0);
    EXPECT_EQ(c.clip_val, 0.01);
    EXPECT_EQ(c.epochs, 5000);
    EXPECT_EQ(c.output_dir, "runs/" + name);
    if (name != "cub") {
      EXPECT_EQ(c.rounds, 100);
    }
    EXPECT_NE(table.find("`" + name + ".json`"), std::string::npos);
    EXPECT_NE(table.find("`datasets/" + c.dataset + "`"), std::string::npos) << c.dataset;
  }
}

}  // namespace
