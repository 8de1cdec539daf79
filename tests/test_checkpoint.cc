// Checkpoints: every tensor and every piece of run state survives a save/load; a run stopped
// mid-round and resumed from the file continues exactly; truncated, corrupted and mismatched
// checkpoints are refused with a message naming what is wrong; the NaN guard names the step.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "small_config.h"
#include "train/checkpoint.h"
#include "train/run.h"
#include "formats/safetensors.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace fs = std::filesystem;

namespace zscrgan {
namespace {

Config small_config() { return testing::small_config(5); }

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zscrgan_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "ckpt.safetensors").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Trains a round and three steps of the next, then saves the trainer to path_ with a best
  // of 0.25 at round 1; returns that standing.
  RunState save_inside_second_round(Trainer& a) {
    a.train_round();
    RunState standing;
    standing.best_score = 0.25;
    standing.best_round = 1;
    int polls = 0;
    RoundHooks stop;
    stop.should_stop = [&] { return polls++ == 3; };
    EXPECT_FALSE(a.run_round(stop).has_value()) << "the round stops after three steps";
    save_checkpoint(a, standing, path_);
    return standing;
  }
  fs::path dir_;
  std::string path_;
  Config cfg_ = small_config();
  Dataset data_ = load_configured_dataset(cfg_);
  std::unique_ptr<Backend> be_ = make_cpu_backend();
};

std::vector<float> host(Backend& be, const Tensor& t) {
  std::vector<float> v(t.numel());
  be.download(t, v.data());
  return v;
}

TEST_F(CheckpointTest, EveryTensorAndRunStateRoundTrips) {
  Trainer a(cfg_, data_, *be_);
  const RunState standing = save_inside_second_round(a);

  Trainer b(cfg_, data_, *be_);
  const RunState loaded = load_checkpoint(b, path_);
  const auto pa = a.model().parameter_tensors(), pb = b.model().parameter_tensors();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(host(*be_, pa[i].tensor), host(*be_, pb[i].tensor)) << pa[i].name;
  const auto sa = a.model().state_tensors(), sb = b.model().state_tensors();
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(host(*be_, sa[i].tensor), host(*be_, sb[i].tensor)) << sa[i].name;
  EXPECT_EQ(a.model().critic_group.steps, b.model().critic_group.steps);
  EXPECT_EQ(a.model().csem_group.steps, b.model().csem_group.steps);
  const TrainingState ta = a.training_state(), tb = b.training_state();
  EXPECT_EQ(a.model().generator_group.steps, b.model().generator_group.steps);
  EXPECT_EQ(tb.round, 1);
  EXPECT_EQ(tb.noise_offset, ta.noise_offset);
  EXPECT_EQ(loaded.best_score, 0.25);
  EXPECT_EQ(loaded.best_round, 1);
  const SamplerState &ssa = ta.sampler, &ssb = tb.sampler;
  EXPECT_EQ(ssa.class_order, ssb.class_order);
  EXPECT_EQ(ssa.image_cursor, ssb.image_cursor);
  EXPECT_EQ(ssa.rng_counter, ssb.rng_counter);
  const RoundProgress &ra = ta.progress, &rb = tb.progress;
  EXPECT_TRUE(rb.in_round);
  EXPECT_EQ(ra.e_done, rb.e_done);
  EXPECT_EQ(ra.rows, rb.rows);
  EXPECT_EQ(ra.step_losses, rb.step_losses);
}

TEST_F(CheckpointTest, ResumedFromTheFileContinuesLikeAnUninterruptedRun) {
  Trainer a(cfg_, data_, *be_);
  std::vector<RoundLosses> la;
  std::vector<double> pa;
  for (int r = 0; r < 3; ++r) {
    la.push_back(a.train_round());
    pa.push_back(a.evaluate().prec_at_k);
  }
  for (int stop_at : {2, 6}) {  // inside the E-step; between the E-step and the M-step
    SCOPED_TRACE(stop_at);
    Trainer b(cfg_, data_, *be_);
    b.train_round();
    b.evaluate();
    int polls = 0;
    RoundHooks stop;
    stop.should_stop = [&] { return polls++ == stop_at; };
    ASSERT_FALSE(b.run_round(stop).has_value());
    save_checkpoint(b, RunState{}, path_);
    Trainer c(cfg_, data_, *be_);
    load_checkpoint(c, path_);
    for (int r = 1; r < 3; ++r) {
      const RoundLosses l = c.train_round();
      EXPECT_EQ(l.critic, la[r].critic);
      EXPECT_EQ(l.generator, la[r].generator);
      EXPECT_EQ(l.csem, la[r].csem);
      EXPECT_EQ(c.evaluate().prec_at_k, pa[r]);
    }
  }
}

TEST_F(CheckpointTest, TruncatedFilesAreRefusedCleanly) {
  Trainer a(cfg_, data_, *be_);
  save_checkpoint(a, RunState{}, path_);
  const auto size = fs::file_size(path_);
  const std::string cut = (dir_ / "cut.safetensors").string();
  for (uintmax_t keep : {uintmax_t(0), uintmax_t(7), uintmax_t(100), size / 2, size - 1}) {
    fs::copy_file(path_, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, keep);
    Trainer b(cfg_, data_, *be_);
    try {
      load_checkpoint(b, cut);
      ADD_FAILURE() << "a checkpoint cut to " << keep << " bytes loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
    }
  }
}

TEST_F(CheckpointTest, CorruptedTensorBytesAreRefused) {
  Trainer a(cfg_, data_, *be_);
  a.train_round();
  save_checkpoint(a, RunState{}, path_);
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-40, std::ios::end);  // inside the tensor data
    char c;
    f.read(&c, 1);
    f.seekp(-40, std::ios::end);
    c ^= 0x10;
    f.write(&c, 1);
  }
  Trainer b(cfg_, data_, *be_);
  try {
    load_checkpoint(b, path_);
    FAIL() << "a corrupted checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupted"), std::string::npos) << e.what();
  }
}

// The run state in the header (best score, noise offset, round, ...) and the stored config are
// covered by the content hash as the tensors are: one changed digit is refused, whichever
// metadata entry holds it and whichever reader meets it.
TEST_F(CheckpointTest, ChangedMetadataDigitsAreRefused) {
  Trainer a(cfg_, data_, *be_);
  a.train_round();
  RunState standing;
  standing.best_score = 0.25;
  TrainingState moved = a.training_state();
  moved.noise_offset = 123456;
  a.restore_training_state(moved);
  save_checkpoint(a, standing, path_);
  const std::string bytes = zscrgan_test::read_bytes(path_);
  int refused = 0;
  // As the header holds them: JSON text inside a JSON string, its quotes escaped.
  for (const char* field : {R"(\"best_score\":0.25)", R"(\"noise_offset\":123456)",
                            R"(\"round\":1)", R"(\"seed\": 5)"}) {
    const size_t at = bytes.find(field);
    ASSERT_NE(at, std::string::npos) << field << " in the header";
    std::string changed = bytes;
    char& digit = changed[at + std::string(field).size() - 1];
    digit = digit == '9' ? '8' : static_cast<char>(digit + 1);  // same length: the layout holds
    const std::string other = (dir_ / "changed.safetensors").string();
    zscrgan_test::write_bytes(other, changed);
    for (int reader = 0; reader < 3; ++reader) {
      const std::string msg = zscrgan_test::error_of([&] {
        if (reader == 0) {
          Trainer b(cfg_, data_, *be_);
          load_checkpoint(b, other);
        } else if (reader == 1) {
          checkpoint_config(other);
        } else {
          checkpoint_standing(other);
        }
      });
      EXPECT_NE(msg.find("corrupted"), std::string::npos) << field << ": " << msg;
      refused += msg.find("corrupted") != std::string::npos;
    }
  }
  EXPECT_EQ(refused, 12);
}

// A checkpoint whose hash is right but whose run state is out of range (written by hand or by
// another tool) is refused naming what: a round row outside the dataset would otherwise be read
// out of bounds.
TEST_F(CheckpointTest, OutOfRangeRunStateIsRefusedEvenWithAValidHash) {
  Trainer a(cfg_, data_, *be_);
  save_inside_second_round(a);
  const SafeTensorsFile good = read_safetensors(path_);
  auto write_edited = [&](const std::function<void(SafeTensorsFile&)>& edit) {
    SafeTensorsFile f = good;
    edit(f);
    f.metadata["content_hash"] = checkpoint_content_hash(f);
    write_safetensors_atomic(path_, f);
  };
  auto refusal = [&](const std::function<void(SafeTensorsFile&)>& edit) {
    write_edited(edit);
    Trainer b(cfg_, data_, *be_);
    return zscrgan_test::error_of([&] { load_checkpoint(b, path_); });
  };
  auto run_edit = [&](const char* key, nlohmann::json value) {
    return [=](SafeTensorsFile& f) {
      nlohmann::json run = nlohmann::json::parse(f.metadata.at("run"));
      run[key] = value;
      f.metadata["run"] = run.dump();
    };
  };
  write_edited([](SafeTensorsFile&) {});
  Trainer unedited(cfg_, data_, *be_);
  EXPECT_NO_THROW(load_checkpoint(unedited, path_));
  EXPECT_NE(refusal(run_edit("best_round", 2)).find("run state is out of range (round 1, best_round 2"),
            std::string::npos);
  EXPECT_NE(refusal(run_edit("best_score", 1.5)).find("best_score 1.5"), std::string::npos);
  EXPECT_NE(refusal(run_edit("elapsed_s", -1.0)).find("elapsed_s -1"), std::string::npos);
  EXPECT_NE(refusal(run_edit("round", -1)).find("out of range (round -1"), std::string::npos);
  const std::string row = refusal([&](SafeTensorsFile& f) {
    for (SafeTensor& t : f.tensors) {
      if (t.name != "round/rows") continue;
      std::vector<int64_t> rows = as_i64(t);
      rows[0] = data_.image_features.rows;  // the first entry is an image row
      t = make_i64_tensor(t.name, {int64_t(rows.size())}, rows.data());
    }
  });
  EXPECT_NE(row.find("image row " + std::to_string(data_.image_features.rows) + " (entry 0) is outside"),
            std::string::npos) << row;
}

// The hash builds before the metadata was covered computed: the tensors only. (The format's
// definition, written out here independently of the library.)
std::string tensor_only_hash(const SafeTensorsFile& f) {
  std::vector<const SafeTensor*> order;
  for (const SafeTensor& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* x, auto* y) { return x->name < y->name; });
  uint64_t h = 0x9E3779B97F4A7C15ull;
  auto mix = [&](uint64_t w) {
    h ^= w;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  };
  for (const SafeTensor* t : order) {
    for (unsigned char c : t->name) mix(c);
    size_t i = 0;
    for (; i + 8 <= t->bytes.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, t->bytes.data() + i, 8);
      mix(w);
    }
    for (; i < t->bytes.size(); ++i) mix(t->bytes[i]);
    mix(t->bytes.size());
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

TEST_F(CheckpointTest, ACheckpointWhoseHashCoversOnlyTheTensorsIsRefusedSayingSo) {
  Trainer a(cfg_, data_, *be_);
  a.train_round();
  save_checkpoint(a, RunState{}, path_);
  SafeTensorsFile f = read_safetensors(path_);
  f.metadata["content_hash"] = tensor_only_hash(f);
  write_safetensors_atomic(path_, f);
  Trainer b(cfg_, data_, *be_);
  const std::string msg = zscrgan_test::error_of([&] { load_checkpoint(b, path_); });
  EXPECT_NE(msg.find("covers the tensors only"), std::string::npos) << msg;
  EXPECT_NE(msg.find(kCheckpointFormat), std::string::npos) << msg;
}

TEST_F(CheckpointTest, MismatchedConfigOrShapesAreRefusedNamingTheKeyOrTensor) {
  Trainer a(cfg_, data_, *be_);
  save_checkpoint(a, RunState{}, path_);
  Config other = cfg_;
  other.gf_dim = 48;
  Trainer b(other, data_, *be_);
  try {
    load_checkpoint(b, path_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gf_dim"), std::string::npos) << e.what();
  }
  // Same config, data of another text width: the dataset record says so, and without one (a
  // checkpoint written before it existed) the tensor that does not fit is named.
  Config wider = cfg_;
  wider.synthetic.text_dim = 14;
  Dataset wider_data = load_configured_dataset(wider);
  Trainer c(cfg_, wider_data, *be_);
  const std::string other_data = zscrgan_test::error_of([&] { load_checkpoint(c, path_); });
  EXPECT_NE(other_data.find("then " + a.dataset_identity().describe()), std::string::npos) << other_data;
  EXPECT_NE(other_data.find("now " + c.dataset_identity().describe()), std::string::npos) << other_data;
  EXPECT_NE(c.dataset_identity().describe().find("texts x 14"), std::string::npos);
  SafeTensorsFile f = read_safetensors(path_);
  ASSERT_EQ(f.metadata.erase("dataset"), 1u);
  f.metadata["content_hash"] = checkpoint_content_hash(f);
  write_safetensors_atomic(path_, f);
  const std::string tensor = zscrgan_test::error_of([&] { load_checkpoint(c, path_); });
  EXPECT_NE(tensor.find("generator.condition.w"), std::string::npos) << tensor;
  // Keys that only say how long or where to run may change.
  Config longer = cfg_;
  longer.rounds = 99;
  longer.output_dir = "elsewhere";
  Trainer d(longer, data_, *be_);
  EXPECT_NO_THROW(load_checkpoint(d, path_));
}

// A checkpoint written before a key existed stores no value for it: the key reads as its
// default, and a resumable one may then take another value in the resuming run.
TEST_F(CheckpointTest, ACheckpointWithoutANewerResumableKeyResumes) {
  Trainer a(cfg_, data_, *be_);
  a.train_round();
  save_checkpoint(a, RunState{}, path_);
  SafeTensorsFile f = read_safetensors(path_);
  const std::string line = "  \"retrieval_record\": \"json\",\n";
  std::string& stored = f.metadata["config"];
  const size_t at = stored.find(line);
  ASSERT_NE(at, std::string::npos) << stored;
  stored.erase(at, line.size());
  f.metadata["content_hash"] = checkpoint_content_hash(f);
  write_safetensors_atomic(path_, f);
  EXPECT_EQ(checkpoint_config(path_).retrieval_record, RetrievalRecord::Json);

  Config resumed = cfg_;
  resumed.retrieval_record = RetrievalRecord::Pkl;
  Trainer b(resumed, data_, *be_);
  EXPECT_NO_THROW(load_checkpoint(b, path_));
  EXPECT_EQ(b.rounds_done(), 1);
  // A key that is not resumable is compared too: missing, it reads as its default (100
  // E-step iterations), which is not this run's.
  ASSERT_NE(cfg_.e_step_iters, Config{}.e_step_iters);
  SafeTensorsFile g = read_safetensors(path_);
  std::string& text = g.metadata["config"];
  const std::string e_step = "  \"e_step_iters\": " + std::to_string(cfg_.e_step_iters) + ",\n";
  ASSERT_NE(text.find(e_step), std::string::npos) << text;
  text.erase(text.find(e_step), e_step.size());
  g.metadata["content_hash"] = checkpoint_content_hash(g);
  write_safetensors_atomic(path_, g);
  Trainer c(cfg_, data_, *be_);
  const std::string msg = zscrgan_test::error_of([&] { load_checkpoint(c, path_); });
  EXPECT_NE(msg.find("config key 'e_step_iters' is 100 in the checkpoint but 6"), std::string::npos)
      << msg;
}

// A checkpoint records the data it was trained on; resuming on other data (one feature value
// changed, or other shapes) is refused naming both, the same data under another name resumes,
// and a checkpoint from before the record existed resumes unchecked.
TEST_F(CheckpointTest, ResumingOnOtherDataIsRefusedNamingBoth) {
  Trainer a(cfg_, data_, *be_);
  a.train_round();
  save_checkpoint(a, RunState{}, path_);

  Dataset renamed = data_;
  renamed.name = "moved";
  Trainer same(cfg_, renamed, *be_);
  EXPECT_NO_THROW(load_checkpoint(same, path_));

  Dataset changed = data_;
  changed.image_features.data[7] += 0.5f;
  Trainer b(cfg_, changed, *be_);
  const std::string msg = zscrgan_test::error_of([&] { load_checkpoint(b, path_); });
  EXPECT_NE(msg.find(path_ + ": trained on other data than this run's dataset"), std::string::npos) << msg;
  EXPECT_NE(msg.find("content hash " + a.dataset_identity().content_hash + "; now"), std::string::npos) << msg;
  EXPECT_NE(msg.find(b.dataset_identity().content_hash), std::string::npos) << msg;
  EXPECT_NE(a.dataset_identity().content_hash, b.dataset_identity().content_hash);

  Dataset fewer = data_;  // one unseen class fewer: same seen classes, so the sampler fits
  const int64_t dropped = fewer.test_classes.back();
  fewer.test_classes.pop_back();
  auto drop_rows = [&](HostMatrix& m, std::vector<int64_t>& labels) {
    HostMatrix kept;
    kept.cols = m.cols;
    std::vector<int64_t> kept_labels;
    for (int64_t r = 0; r < m.rows; ++r) {
      if (labels[r] == dropped) continue;
      kept.data.insert(kept.data.end(), m.row(r), m.row(r) + m.cols);
      kept_labels.push_back(labels[r]);
    }
    kept.rows = static_cast<int64_t>(kept_labels.size());
    m = std::move(kept);
    labels = std::move(kept_labels);
  };
  drop_rows(fewer.image_features, fewer.image_labels);
  drop_rows(fewer.text_features, fewer.text_labels);
  validate_dataset(fewer, "fewer");
  Trainer c(cfg_, fewer, *be_);
  const std::string shapes = zscrgan_test::error_of([&] { load_checkpoint(c, path_); });
  EXPECT_NE(shapes.find("then " + a.dataset_identity().describe()), std::string::npos) << shapes;
  EXPECT_NE(shapes.find("now " + c.dataset_identity().describe()), std::string::npos) << shapes;
  EXPECT_NE(a.dataset_identity().describe(), c.dataset_identity().describe());

  SafeTensorsFile f = read_safetensors(path_);
  ASSERT_EQ(f.metadata.erase("dataset"), 1u);
  f.metadata["content_hash"] = checkpoint_content_hash(f);
  write_safetensors_atomic(path_, f);
  Trainer d(cfg_, changed, *be_);
  EXPECT_NO_THROW(load_checkpoint(d, path_));
}

TEST_F(CheckpointTest, NonFiniteLossStopsNamingTheQuantityAndStep) {
  Trainer a(cfg_, data_, *be_);
  const Tensor w = a.model().critic2.w.value;
  std::vector<float> v = host(*be_, w);
  v[0] = std::nanf("");
  be_->upload(w, v.data());
  try {
    a.train_round();
    FAIL() << "a NaN critic weight trained on";
  } catch (const DivergenceError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("L_D"), std::string::npos) << m;
    EXPECT_NE(m.find("E-step iteration 1, D step 1"), std::string::npos) << m;
  }
  Trainer b(cfg_, data_, *be_);
  be_->upload(b.model().csem.b.value, std::vector<float>(cfg_.embed_dim, INFINITY).data());
  try {
    b.check_parameters_finite();
    FAIL();
  } catch (const DivergenceError& e) {
    EXPECT_NE(std::string(e.what()).find("csem.fc.b"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zscrgan
