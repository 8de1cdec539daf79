// Run output: the pickle retrieval record the original's analysis scripts read (checked by
// loading it with Python's own pickle), and run_training's caller hooks (on_round returning
// false and should_stop) stopping a run the way a signal does.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "small_config.h"
#include "core/fileio.h"
#include "train/checkpoint.h"
#include "train/pickle.h"
#include "train/run.h"
#include "train/run_output.h"
#include "train/trainer.h"
#include "backend/cpu/cpu_backend.h"
#include "data/dataset_source.h"

namespace zscrgan {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The Python 3 interpreter, or "" when there is none.
std::string find_python() {
  if (fs::exists("/usr/bin/python3")) return "/usr/bin/python3";
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string d; std::getline(dirs, d, ':');)
    if (!d.empty() && fs::exists(fs::path(d) / "python3")) return (fs::path(d) / "python3").string();
  return "";
}

// Loads a pickle file with Python and returns it as JSON: [[key, [values...]], ...] for the
// list of one-key dicts, or {"error": ...} when it is not that shape. Python 3 ints are
// unbounded, so values beyond 2^63 would show as such.
json load_with_python(const std::string& python, const std::string& pkl) {
  const std::string script =
      "import json, pickle, sys\n"
      "r = pickle.load(open(sys.argv[1], 'rb'))\n"
      "ok = isinstance(r, list) and all(isinstance(d, dict) and len(d) == 1 and\n"
      "     all(isinstance(v, list) for v in d.values()) for d in r)\n"
      "print(json.dumps([[k, v] for d in r for k, v in d.items()] if ok else {'error': repr(r)}))\n";
  const std::string script_path = pkl + ".py";
  write_file_atomic(script_path, script);
  const std::string cmd = "'" + python + "' '" + script_path + "' '" + pkl + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return json{{"error", "popen failed"}};
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) return json{{"error", out}};
  const json j = json::parse(out, nullptr, false);
  return j.is_discarded() ? json{{"error", out}} : j;
}

json as_pairs(const std::vector<QueryRetrieval>& record) {
  json j = json::array();
  for (const QueryRetrieval& q : record) j.push_back({q.query_class, q.retrieved_classes});
  return j;
}

class PickleRecord : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = find_python();
    if (python_.empty()) GTEST_SKIP() << "no python3 found (/usr/bin/python3 or on PATH) to load the pickle";
  }
  json round_trip(const std::vector<QueryRetrieval>& record) {
    const std::string path = dir_.file("record.pkl");
    write_file_atomic(path, pickle_retrieval_record(record));
    return load_with_python(python_, path);
  }
  std::string python_;
  zscrgan_test::ScopedTempDir dir_;
};

TEST_F(PickleRecord, PythonLoadsTheListOfOneKeyDicts) {
  const std::vector<QueryRetrieval> record = {{3, {3, 3, 25, 0, 255, 256, 65535, 65536, -1}},
                                              {25, {25}},
                                              {0, {7, 3}}};
  EXPECT_EQ(round_trip(record), as_pairs(record));
}

TEST_F(PickleRecord, IntsBeyondBinIntAndEmptyLists) {
  constexpr int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  const std::vector<QueryRetrieval> record = {
      {int64_t(1) << 31, {(int64_t(1) << 31) - 1, int64_t(1) << 31, -(int64_t(1) << 31),
                          -(int64_t(1) << 31) - 1, int64_t(1) << 32, int64_t(1) << 40, int64_t(128) << 32,
                          -(int64_t(128) << 32), hi, lo}},
      {hi, {}},
      {lo, {1}}};
  EXPECT_EQ(round_trip(record), as_pairs(record));
  EXPECT_EQ(round_trip({}), json::array());
}

// write_best_retrieval writes the pickle beside the JSON record, under the same base name,
// holding the same query classes and retrieved classes.
TEST_F(PickleRecord, RunOutputWritesBothRecordsAlike) {
  RunOutput output(dir_.file("run"), RetrievalRecords{true, true});
  std::ostringstream log;
  Config cfg;
  output.open(cfg, nullptr, 0, log);
  EvalResult ev;
  ev.k = 3;
  ev.prec_at_k = 0.123456;
  ev.query_labels = {5, 9, int64_t(1) << 33};
  ev.gallery_labels = {9, 5, 5, int64_t(1) << 33, 2};
  ev.retrieved = {1, 2, 0, 0, 4, 3, 3, 0, 1};
  output.write_best_retrieval(ev);
  const std::string base = dir_.file("run/retrieved/acc0.1235");
  ASSERT_TRUE(fs::exists(base + ".json"));
  ASSERT_TRUE(fs::exists(base + ".pkl"));
  json from_json = json::array();
  for (const json& q : json::parse(read_text_file(base + ".json")))
    from_json.push_back({q.at("query_class"), q.at("retrieved_classes")});
  EXPECT_EQ(from_json, json::parse(R"([[5, [5, 5, 9]], [9, [9, 2, 8589934592]], [8589934592, [8589934592, 9, 5]]])"));
  EXPECT_EQ(load_with_python(python_, base + ".pkl"), from_json);

  // Only the records asked for are written.
  RunOutput json_only(dir_.file("json_only"), RetrievalRecords{});
  json_only.open(cfg, nullptr, 0, log);
  json_only.write_best_retrieval(ev);
  EXPECT_TRUE(fs::exists(dir_.file("json_only/retrieved/acc0.1235.json")));
  EXPECT_FALSE(fs::exists(dir_.file("json_only/retrieved/acc0.1235.pkl")));
}

// The caller's hooks of run_training: on_round returning false ends the run after that round,
// should_stop ends it between two steps with the state saved; the run resumed from there ends
// as the uninterrupted run does.
class RunHooks : public ::testing::Test {
 protected:
  Config config(const std::string& out) {
    Config cfg = testing::small_config(21, 4, 6);
    cfg.rounds = 3;
    cfg.device = DeviceChoice::Cpu;
    cfg.output_dir = dir_.file(out);
    return cfg;
  }
  // Trains cfg's first round only, as a run that stopped after it; returns its checkpoints/last.
  static std::string first_round_only(const Config& cfg) {
    std::ostringstream log;
    RunOptions one_round;
    one_round.on_round = [](const std::string&) { return false; };
    EXPECT_EQ(run_training(cfg, log, one_round).rounds, 1) << log.str();
    return (fs::path(cfg.output_dir) / "checkpoints" / "last.safetensors").string();
  }
  static json without_timing(const std::string& record) {
    json j = json::parse(record);
    j.erase("seconds");
    j.erase("train_seconds");
    return j;
  }
  zscrgan_test::ScopedTempDir dir_;
};

TEST_F(RunHooks, OnRoundReturningFalseStopsAfterThatRound) {
  const Config cfg = config("run");
  std::ostringstream log;
  std::vector<std::string> seen;
  RunOptions opts;
  opts.on_round = [&](const std::string& record) {
    seen.push_back(record);
    return seen.size() < 2;
  };
  const RunSummary s = run_training(cfg, log, opts);
  EXPECT_EQ(s.rounds, 2) << log.str();
  EXPECT_TRUE(s.stopped_by_caller);
  EXPECT_EQ(s.stopped_by_signal, 0);
  EXPECT_EQ(s.round_records, seen);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(json::parse(seen[1])["round"], 2);
  EXPECT_NE(log.str().find("stopped by request after round 2"), std::string::npos) << log.str();
  std::istringstream metrics(read_text_file(dir_.file("run/metrics.jsonl")));
  int lines = 0;
  for (std::string l; std::getline(metrics, l);) lines += !l.empty();
  EXPECT_EQ(lines, 2);
  const CheckpointStanding last = checkpoint_standing(dir_.file("run/checkpoints/last.safetensors"));
  EXPECT_EQ(last.round, 2);
  EXPECT_FALSE(last.in_round);
}

TEST_F(RunHooks, ShouldStopStopsBetweenStepsAndTheResumedRunEndsAsAnUninterruptedOne) {
  std::ostringstream log;
  const RunSummary whole = run_training(config("whole"), log);
  ASSERT_EQ(whole.rounds, 3) << log.str();

  const Config cfg = config("run");
  RunOptions opts;
  int polls = 0;
  // Polled before each of a round's 4 E-step iterations and its one M-step chunk: the 8th poll
  // is in round 2, after 2 E-step iterations.
  opts.should_stop = [&] { return ++polls == 8; };
  const RunSummary first = run_training(cfg, log, opts);
  EXPECT_TRUE(first.stopped_by_caller) << log.str();
  EXPECT_EQ(first.stopped_by_signal, 0);
  EXPECT_EQ(first.rounds, 1);
  EXPECT_EQ(first.round_records.size(), 1u);
  EXPECT_NE(log.str().find("stopped by request in round 2 after 2 of 10 steps"), std::string::npos) << log.str();
  // The line to resume with works as printed: the checkpoint holds the run's configuration.
  EXPECT_NE(log.str().find("resume with: zscrgan_cuda --resume " + cfg.output_dir + "\n"), std::string::npos)
      << log.str();
  const CheckpointStanding saved = checkpoint_standing(dir_.file("run/checkpoints/last.safetensors"));
  EXPECT_EQ(saved.round, 1);
  EXPECT_TRUE(saved.in_round);

  RunOptions resume;
  resume.resume_dir = cfg.output_dir;
  const RunSummary rest = run_training(cfg, log, resume);
  EXPECT_FALSE(rest.stopped_by_caller);
  EXPECT_EQ(rest.rounds, 3);
  ASSERT_EQ(rest.round_records.size(), 2u);
  std::vector<std::string> records = first.round_records;
  records.insert(records.end(), rest.round_records.begin(), rest.round_records.end());
  for (size_t r = 0; r < records.size(); ++r)
    EXPECT_EQ(without_timing(records[r]), without_timing(whole.round_records[r])) << "round " << r + 1;
  EXPECT_EQ(rest.best_score, whole.best_score);
  EXPECT_EQ(rest.best_round, whole.best_round);
}

// A stop inside a round whose steps have diverged saves nothing: the run ends with the
// divergence error and the last checkpoint is still the good one of the round before. The
// divergence: the run resumes from a copy of its last checkpoint with a NaN critic weight.
TEST_F(RunHooks, AStopAfterDivergenceKeepsTheLastGoodCheckpoint) {
  const Config cfg = config("run");
  std::ostringstream log;
  const std::string last = first_round_only(cfg);
  const std::string good = read_text_file(last);

  const Dataset data = load_configured_dataset(cfg);
  auto be = make_cpu_backend();
  Trainer t(cfg, data, *be);
  const RunState st = load_checkpoint(t, last);
  const Tensor w = t.model().critic2.w.value;
  std::vector<float> v(w.numel());
  be->download(w, v.data());
  v[0] = std::nanf("");
  be->upload(w, v.data());
  const std::string poisoned = dir_.file("poisoned.safetensors");
  save_checkpoint(t, st, poisoned);

  RunOptions resume;
  resume.resume_dir = cfg.output_dir;
  resume.resume_checkpoint = std::make_shared<const OpenedCheckpoint>(open_checkpoint(poisoned));
  int polls = 0;
  resume.should_stop = [&] { return ++polls == 3; };  // round 2, after 2 E-step iterations
  try {
    run_training(cfg, log, resume);
    FAIL() << "a stop after diverged steps saved the state: " << log.str();
  } catch (const DivergenceError& e) {
    EXPECT_NE(std::string(e.what()).find("in round 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the last good checkpoint is kept: " + last), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_text_file(last), good) << "the diverged state replaced the last good checkpoint";
}

// A run that diverges before its first round ends says that it has no checkpoint to keep.
TEST_F(RunHooks, ADivergenceInTheFirstRoundSaysThereIsNoCheckpoint) {
  Config cfg = config("run");
  cfg.CSEM_lr = 1e38;  // the CSEM's first Adam steps overflow
  std::ostringstream log;
  try {
    run_training(cfg, log);
    FAIL() << "trained on with CSEM_lr 1e38: " << log.str();
  } catch (const DivergenceError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("in round 1"), std::string::npos) << m;
    EXPECT_NE(m.find("no round had finished, so there is no checkpoint"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(dir_.file("run/checkpoints/last.safetensors")));
}

// A new run into the folder of an earlier one is refused before anything there changes, and
// names the earlier run's file; asked to overwrite, it replaces the earlier run and says so.
TEST_F(RunHooks, ANewRunIntoAnEarlierRunsFolderIsRefusedUnlessAskedToOverwrite) {
  Config cfg = config("run");
  cfg.rounds = 1;
  std::ostringstream first, refused, replaced;
  run_training(cfg, first);
  EXPECT_EQ(first.str().find("replacing"), std::string::npos) << first.str();
  const std::vector<std::string> files = {"checkpoints/last.safetensors", "checkpoints/best.safetensors",
                                          "metrics.jsonl", "config.json"};
  std::vector<std::string> before;
  for (const std::string& f : files) before.push_back(read_text_file(dir_.file("run/" + f)));
  cfg.rounds = 2;  // a run that would write other files
  try {
    run_training(cfg, refused);
    FAIL() << "trained into the earlier run's folder: " << refused.str();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("holds an earlier run"), std::string::npos) << m;
    EXPECT_NE(m.find("last.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("--resume"), std::string::npos) << m;
    EXPECT_NE(m.find("--overwrite"), std::string::npos) << m;
  }
  for (size_t i = 0; i < files.size(); ++i)
    EXPECT_EQ(read_text_file(dir_.file("run/" + files[i])), before[i]) << files[i] << " changed";

  RunOptions overwrite;
  overwrite.overwrite = true;
  const RunSummary s = run_training(cfg, replaced, overwrite);
  EXPECT_EQ(s.rounds, 2);
  EXPECT_NE(replaced.str().find("replacing the earlier run in " + cfg.output_dir), std::string::npos)
      << replaced.str();
  EXPECT_EQ(checkpoint_standing(dir_.file("run/checkpoints/last.safetensors")).round, 2);
}

// Any one file of an earlier run marks the folder as holding one; an empty folder does not.
TEST(EarlierRunFile, NamesAnyFileOfAnEarlierRun) {
  zscrgan_test::ScopedTempDir dir;
  const std::string run = dir.file("run");
  EXPECT_EQ(earlier_run_file(run), "");  // no folder at all
  fs::create_directories(fs::path(run) / "checkpoints");
  fs::create_directories(fs::path(run) / "retrieved");
  std::ofstream(fs::path(run) / "config.json") << "{}";
  std::ofstream(fs::path(run) / "retrieved" / "notes.txt") << "not a record";
  EXPECT_EQ(earlier_run_file(run), "") << "config.json alone is not a run";
  for (const std::string f : {"retrieved/acc0.5000.pkl", "retrieved/acc0.5000.json", "metrics.jsonl",
                              "checkpoints/best.safetensors", "checkpoints/last.safetensors"}) {
    std::ofstream(fs::path(run) / f) << "x";
    EXPECT_EQ(earlier_run_file(run), (fs::path(run) / f).string()) << f;
    fs::remove(fs::path(run) / f);
  }
}

// A resumed run whose time budget is already spent trains nothing and leaves `last` as it was.
TEST_F(RunHooks, AResumedRunWhoseTimeBudgetIsSpentTrainsNoMoreRounds) {
  Config cfg = config("run");
  const std::string last = first_round_only(cfg);
  const std::string before = read_text_file(last);
  cfg.time_budget_s = 1e-6;  // below the first round's own time
  RunOptions resume;
  resume.resume_dir = cfg.output_dir;
  std::ostringstream resumed_log;
  const RunSummary s = run_training(cfg, resumed_log, resume);
  EXPECT_EQ(s.rounds, 1) << resumed_log.str();
  EXPECT_NE(resumed_log.str().find("already spent"), std::string::npos) << resumed_log.str();
  EXPECT_EQ(read_text_file(last), before);
}

// Temporaries of retrieval records that a killed writer left are removed when a run opens its
// folder; other files of that name shape are not ours and stay.
TEST_F(RunHooks, ARunRemovesTheTemporariesOfRetrievalRecordsLeftBehind) {
  Config cfg = config("run");
  cfg.rounds = 1;
  std::ostringstream log;
  run_training(cfg, log);
  const std::string stale_json = dir_.file("run/retrieved/acc0.5000.json.tmp-0123456789ab");
  const std::string stale_pkl = dir_.file("run/retrieved/acc0.5000.pkl.tmp-0123456789ab");
  const std::string other = dir_.file("run/retrieved/notes.txt.tmp-0123456789ab");
  for (const std::string& p : {stale_json, stale_pkl, other}) write_file_atomic(p, "x");
  cfg.rounds = 2;
  RunOptions resume;
  resume.resume_dir = cfg.output_dir;
  run_training(cfg, log, resume);
  EXPECT_FALSE(fs::exists(stale_json));
  EXPECT_FALSE(fs::exists(stale_pkl));
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
}  // namespace zscrgan

namespace zscrgan {
namespace {

// The config key picks the records run_training writes for each best round.
TEST(RetrievalRecordKey, PicksTheRecordsARunWrites) {
  zscrgan_test::ScopedTempDir dir;
  const std::pair<std::string, RetrievalRecord> choices[] = {
      {"json", RetrievalRecord::Json}, {"pkl", RetrievalRecord::Pkl}, {"both", RetrievalRecord::Both}};
  for (const auto& [choice, record] : choices) {
    Config cfg = testing::small_config(21, 2, 3);
    cfg.rounds = 1;
    cfg.device = DeviceChoice::Cpu;
    cfg.retrieval_record = record;
    cfg.output_dir = dir.file(choice);
    std::ostringstream log;
    run_training(cfg, log);
    int json_files = 0, pkl_files = 0;
    for (const auto& e : fs::directory_iterator(dir.file(choice + "/retrieved"))) {
      json_files += e.path().extension() == ".json";
      pkl_files += e.path().extension() == ".pkl";
    }
    EXPECT_EQ(json_files, choice == "pkl" ? 0 : 1) << choice << "\n" << log.str();
    EXPECT_EQ(pkl_files, choice == "json" ? 0 : 1) << choice << "\n" << log.str();
  }
}

}  // namespace
}  // namespace zscrgan
