// Strict configuration: defaults, each class of error naming its source and key, overrides,
// the exact round trip through config_to_json, the enum keys' names, which keys a resume may
// change, configs/README.md's key list against the table, and the configs shipped in configs/.
#include <gtest/gtest.h>

#include <limits>

#include <nlohmann/json.hpp>

#include "config_readme.h"
#include "data_test_util.h"
#include "config/config.h"
#include "core/fileio.h"

namespace {

using zscrgan::Config;
using zscrgan::parse_config;
using zscrgan_test::error_of;
using zscrgan_test::ScopedTempDir;

std::string err(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { parse_config(text, "configs/x.json", overrides); });
}

TEST(Config, EmptyObjectGivesPublishedDefaults) {
  const Config c = parse_config("{}", "configs/x.json");
  EXPECT_EQ(c.batch_size, 32);
  EXPECT_EQ(c.gf_dim, 2048);
  EXPECT_EQ(c.df_dim, 1024);
  EXPECT_EQ(c.embed_dim, 1024);
  EXPECT_EQ(c.CSEM_lr, 0.002);
  EXPECT_EQ(c.generator_lr, 0.0002);
  EXPECT_EQ(c.discriminator_lr, 0.0002);
  EXPECT_EQ(c.epochs, 5000);
  EXPECT_EQ(c.kl_div_coefficient, 1.0);
  EXPECT_EQ(c.mm_reg_coeff, 2.0);
  EXPECT_EQ(c.z_dim, 256);
  EXPECT_EQ(c.clip_val, 0.01);
  EXPECT_EQ(c.dataset, "synthetic");
  EXPECT_EQ(c.top_k, 50);
  EXPECT_EQ(c.device, zscrgan::DeviceChoice::Auto);
  EXPECT_EQ(c.ap_divisor, zscrgan::ApDivisor::RelevantInTopK);
  EXPECT_EQ(c.train_texts, zscrgan::TrainTexts::First);
  EXPECT_EQ(c.retrieval_record, zscrgan::RetrievalRecord::Json);
  EXPECT_EQ(c.synthetic.seed, 7u);
  EXPECT_EQ(config_to_json(c), config_to_json(Config{}));
}

TEST(Config, ReadsEveryType) {
  const Config c = parse_config(R"({
    "batch_size": 8, "CSEM_lr": 0.5, "generator_lr": 1, "tf32": true, "device": "cpu",
    "seed": 18446744073709551615, "synthetic": {"text_noise": 0.125, "seed": 3,
    "latent_dim": 4}})", "configs/x.json");
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.CSEM_lr, 0.5);
  EXPECT_EQ(c.generator_lr, 1.0);
  EXPECT_TRUE(c.tf32);
  EXPECT_EQ(c.device, zscrgan::DeviceChoice::Cpu);
  EXPECT_EQ(c.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.synthetic.text_noise, 0.125f);
  EXPECT_EQ(c.synthetic.seed, 3u);
  EXPECT_EQ(c.synthetic.latent_dim, 4);
  EXPECT_EQ(c.synthetic.seen_classes, zscrgan::SyntheticSpec{}.seen_classes);
}

TEST(Config, MalformedJsonNamesFileLineAndColumn) {
  const std::string msg = err("{\n  \"batch_size\": 32,\n  \"gf_dim\": ,\n}");
  EXPECT_EQ(msg.rfind("configs/x.json:3:13: malformed JSON: ", 0), 0u) << msg;
  EXPECT_EQ(err("").rfind("configs/x.json:1:1: malformed JSON", 0), 0u) << err("");
  EXPECT_EQ(err("[1]"), "configs/x.json: expected a JSON object at the top level, got array [1]");
  EXPECT_EQ(err(R"({"CSEM_lr": 1e400})"),
            "configs/x.json: malformed JSON: number overflow parsing '1e400'");
  EXPECT_EQ(err(R"({"batch_size": 1, })").rfind("configs/x.json:1:19: malformed JSON", 0), 0u);
}

TEST(Config, UnknownKeys) {
  EXPECT_EQ(err(R"({"foo": 1})"), "configs/x.json: unknown key 'foo'");
  EXPECT_EQ(err(R"({"batch_sise": 1})"),
            "configs/x.json: unknown key 'batch_sise' (did you mean 'batch_size'?)");
  EXPECT_EQ(err(R"({"synthetic": {"sed": 1}})"),
            "configs/x.json: unknown key 'synthetic.sed' (did you mean 'synthetic.seed'?)");
  EXPECT_EQ(err(R"({"synthetic.seed": 1})"), "configs/x.json: unknown key 'synthetic.seed'");
  EXPECT_EQ(err(R"({"seed": 1, "seed": 2})"), "configs/x.json: duplicate key 'seed'");
  EXPECT_EQ(err(R"({"synthetic": {"seed": 1, "seed": 2}})"),
            "configs/x.json: duplicate key 'synthetic.seed'");
}

TEST(Config, WrongTypes) {
  EXPECT_EQ(err(R"({"batch_size": "32"})"),
            "configs/x.json: key 'batch_size' must be an integer, got string \"32\"");
  EXPECT_EQ(err(R"({"batch_size": 32.5})"),
            "configs/x.json: key 'batch_size' must be an integer, got number 32.5");
  EXPECT_EQ(err(R"({"CSEM_lr": true})"),
            "configs/x.json: key 'CSEM_lr' must be a number, got boolean true");
  EXPECT_EQ(err(R"({"tf32": 1})"), "configs/x.json: key 'tf32' must be true or false, got integer 1");
  EXPECT_EQ(err(R"({"device": null})"), "configs/x.json: key 'device' must be a string, got null");
  EXPECT_EQ(err(R"({"synthetic": 3})"),
            "configs/x.json: key 'synthetic' must be an object, got integer 3");
  EXPECT_EQ(err(R"({"synthetic": {"image_dim": [1]}})"),
            "configs/x.json: key 'synthetic.image_dim' must be an integer, got array [1]");
  // Beyond int, a key with a range names its range; one without names int's.
  EXPECT_EQ(err(R"({"batch_size": 3000000000})"),
            "configs/x.json: key 'batch_size' must be in [1, 8192], got 3000000000");
  EXPECT_EQ(err(R"({"top_k": 3000000000})"), "configs/x.json: key 'top_k' must be >= 1, got 3000000000");
}

TEST(Config, SeedAcceptsTheFullUnsignedRange) {
  EXPECT_EQ(parse_config(R"({"seed": 0})", "x").seed, 0u);
  EXPECT_EQ(parse_config(R"({"seed": 9223372036854775808})", "x").seed, 9223372036854775808ull);
  EXPECT_EQ(err(R"({"seed": -1})"),
            "configs/x.json: key 'seed' must be an integer in [0, 18446744073709551615], got "
            "integer -1");
  EXPECT_EQ(err(R"({"synthetic": {"seed": 18446744073709551616}})")
                .rfind("configs/x.json: key 'synthetic.seed' must be an integer in [0, ", 0),
            0u);
}

TEST(Config, OutOfRange) {
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {R"({"batch_size": 0})", "key 'batch_size' must be in [1, 8192], got 0"},
      {R"({"gf_dim": -3})", "key 'gf_dim' must be in [1, 16384], got -3"},
      {R"({"z_dim": 0})", "key 'z_dim' must be in [1, 16384], got 0"},
      {R"({"CSEM_lr": 0})", "key 'CSEM_lr' must be > 0, got 0"},
      {R"({"discriminator_lr": -0.1})", "key 'discriminator_lr' must be > 0, got -0.1"},
      {R"({"clip_val": 0.0})", "key 'clip_val' must be > 0, got 0"},
      {R"({"top_k": 0})", "key 'top_k' must be >= 1, got 0"},
      {R"({"rounds": -1})", "key 'rounds' must be >= 0, got -1"},
      {R"({"time_budget_s": -5})", "key 'time_budget_s' must be >= 0, got -5"},
      {R"({"kl_div_coefficient": -1})", "key 'kl_div_coefficient' must be >= 0, got -1"},
      {R"({"device": "gpu"})", "key 'device' must be one of auto, cpu, cuda; got \"gpu\""},
      {R"({"train_texts": "some"})", "key 'train_texts' must be one of first, all; got \"some\""},
      {R"({"ap_divisor": "k"})",
       "key 'ap_divisor' must be one of relevant_in_top_k, min_relevant_k; got \"k\""},
      {R"({"retrieval_record": "csv"})",
       "key 'retrieval_record' must be one of json, pkl, both; got \"csv\""},
      {R"({"output_dir": ""})", "key 'output_dir' must be a non-empty string"},
      {R"({"synthetic": {"unseen_classes": 0}})", "key 'synthetic.unseen_classes' must be in [1, 1000000], got 0"},
      // Upper bounds: sizes whose products would wrap the model's and the round's arithmetic.
      {R"({"gf_dim": 40000})", "key 'gf_dim' must be in [1, 16384], got 40000"},
      {R"({"n_critic": 2147483647})", "key 'n_critic' must be in [1, 100], got 2147483647"},
      {R"({"m_step_iters": 2147483647})", "key 'm_step_iters' must be in [0, 1000000], got 2147483647"},
      {R"({"synthetic": {"latent_dim": 2147483647}})",
       "key 'synthetic.latent_dim' must be in [1, 16384], got 2147483647"},
      // Products of keys within their ranges.
      {R"({"e_step_iters": 1000000, "n_critic": 100, "batch_size": 8192})",
       "(e_step_iters x (n_critic + 1) + m_step_iters) x batch_size is 827392819200 batch rows a "
       "round, more than the 268435456 a round can hold"},
      {R"({"synthetic": {"seen_classes": 1000000, "images_per_class": 1000, "image_dim": 16384}})",
       "the synthetic dataset (classes x (images_per_class x image_dim + texts_per_class x "
       "text_dim)) would hold 16384583685120 floats, more than 2147483648"},
      {R"({"synthetic": {"image_noise": -0.5}})", "key 'synthetic.image_noise' must be >= 0, got -0.5"},
  };
  for (const auto& c : cases) EXPECT_EQ(err(c.text), "configs/x.json: " + c.message) << c.text;
  // The edges themselves are accepted.
  EXPECT_NO_THROW(parse_config(R"({"rounds": 0, "time_budget_s": 0, "epochs": 0,
      "mm_reg_coeff": 0, "e_step_iters": 0, "m_step_iters": 0})", "x"));
}

TEST(Config, Overrides) {
  const Config c = parse_config(R"({"batch_size": 16, "synthetic": {"seed": 1}})", "x",
                                {"batch_size=8", "synthetic.seed=3", "output_dir=runs/a b",
                                 "device=\"cpu\"", "tf32=true", "CSEM_lr=1e-3",
                                 "synthetic={\"latent_dim\": 5}", "dataset=CUB"});
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.synthetic.seed, 3u);
  EXPECT_EQ(c.synthetic.latent_dim, 5);
  EXPECT_EQ(c.output_dir, "runs/a b");
  EXPECT_EQ(c.device, zscrgan::DeviceChoice::Cpu);
  EXPECT_TRUE(c.tf32);
  EXPECT_EQ(c.CSEM_lr, 1e-3);
  EXPECT_EQ(c.dataset, "CUB");
  // Later overrides win.
  EXPECT_EQ(parse_config("{}", "x", {"rounds=3", "rounds=4"}).rounds, 4);
  // An override can repair what the file got out of range: validation runs after them.
  EXPECT_EQ(parse_config(R"({"batch_size": 0})", "x", {"batch_size=4"}).batch_size, 4);
}

TEST(Config, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(err("{}", {"batch_sise=3"}),
            "--set batch_sise: unknown key 'batch_sise' (did you mean 'batch_size'?)");
  EXPECT_EQ(err("{}", {"synthetic.nope=3"}), "--set synthetic.nope: unknown key 'synthetic.nope'");
  EXPECT_EQ(err("{}", {"batch_size.x=3"}),
            "--set batch_size.x: unknown key 'batch_size.x' ('batch_size' holds no keys)");
  EXPECT_EQ(err("{}", {"batch_size=big"}),
            "--set batch_size: key 'batch_size' must be an integer, got string \"big\"");
  EXPECT_EQ(err("{}", {"batch_size=0"}), "--set batch_size: key 'batch_size' must be in [1, 8192], got 0");
  EXPECT_EQ(err("{}", {"synthetic.seed=-2"}).rfind("--set synthetic.seed: key 'synthetic.seed'", 0),
            0u);
  EXPECT_EQ(err("{}", {"rounds"}), "--set rounds: expected key=value");
  EXPECT_EQ(err("{}", {"synthetic=3"}),
            "--set synthetic: key 'synthetic' must be an object, got integer 3");
  // A range error in the file still names the file when an override touched another key.
  EXPECT_EQ(err(R"({"top_k": 0})", {"rounds=2"}), "configs/x.json: key 'top_k' must be >= 1, got 0");
}

TEST(Config, RoundTripIsExact) {
  Config c;
  c.batch_size = 17;
  c.CSEM_lr = 0.1 + 0.2;  // not representable in short decimal
  c.generator_lr = 1.0 / 3.0;
  c.discriminator_lr = 5e-324;  // smallest subnormal
  c.kl_div_coefficient = 0;
  c.time_budget_s = 123456.789;
  c.seed = std::numeric_limits<uint64_t>::max();
  c.tf32 = true;
  c.device = zscrgan::DeviceChoice::Cuda;
  c.ap_divisor = zscrgan::ApDivisor::MinRelevantK;
  c.train_texts = zscrgan::TrainTexts::All;
  c.retrieval_record = zscrgan::RetrievalRecord::Both;
  c.output_dir = "runs/x \"quoted\" \\ ü";
  c.synthetic.text_noise = 0.1f;
  c.synthetic.image_noise = 1.0f / 3.0f;
  c.synthetic.seed = 12345678901234567890ull;
  const std::string text = zscrgan::config_to_json(c);
  const Config r = parse_config(text, "saved");
  EXPECT_EQ(zscrgan::config_to_json(r), text);
  EXPECT_EQ(r.CSEM_lr, c.CSEM_lr);
  EXPECT_EQ(r.generator_lr, c.generator_lr);
  EXPECT_EQ(r.discriminator_lr, c.discriminator_lr);
  EXPECT_EQ(r.time_budget_s, c.time_budget_s);
  EXPECT_EQ(r.seed, c.seed);
  EXPECT_EQ(r.output_dir, c.output_dir);
  EXPECT_EQ(r.device, c.device);
  EXPECT_EQ(r.ap_divisor, c.ap_divisor);
  EXPECT_EQ(r.train_texts, c.train_texts);
  EXPECT_EQ(r.retrieval_record, c.retrieval_record);
  EXPECT_EQ(r.synthetic.text_noise, c.synthetic.text_noise);
  EXPECT_EQ(r.synthetic.image_noise, c.synthetic.image_noise);
  EXPECT_EQ(r.synthetic.seed, c.synthetic.seed);
  // Floats are written as their shortest decimal.
  EXPECT_NE(text.find("\"text_noise\": 0.1,"), std::string::npos) << text;
}

TEST(Config, ToJsonWritesEveryKeyInOrder) {
  const auto j = nlohmann::ordered_json::parse(zscrgan::config_to_json(Config{}));
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  ASSERT_GE(keys.size(), 27u);
  EXPECT_EQ(keys.front(), "batch_size");
  EXPECT_EQ(keys.back(), "synthetic");
  EXPECT_EQ(j["synthetic"].size(), 10u);
  EXPECT_EQ(j["seed"], 0u);
}

// config.json files and checkpoints hold this text; it must not change for the same Config.
TEST(Config, ToJsonOfTheDefaultsIsTheSavedFormat) {
  EXPECT_EQ(zscrgan::config_to_json(Config{}), R"({
  "batch_size": 32,
  "gf_dim": 2048,
  "df_dim": 1024,
  "embed_dim": 1024,
  "CSEM_lr": 0.002,
  "generator_lr": 0.0002,
  "discriminator_lr": 0.0002,
  "epochs": 5000,
  "kl_div_coefficient": 1.0,
  "mm_reg_coeff": 2.0,
  "z_dim": 256,
  "clip_val": 0.01,
  "dataset": "synthetic",
  "rounds": 20,
  "time_budget_s": 0.0,
  "e_step_iters": 100,
  "n_critic": 5,
  "m_step_iters": 100,
  "top_k": 50,
  "ap_divisor": "relevant_in_top_k",
  "train_texts": "first",
  "seed": 0,
  "device": "auto",
  "tf32": false,
  "cuda_graphs": true,
  "output_dir": "runs/default",
  "retrieval_record": "json",
  "datasets_root": "datasets",
  "synthetic": {
    "seen_classes": 40,
    "unseen_classes": 20,
    "images_per_class": 60,
    "texts_per_class": 4,
    "text_dim": 64,
    "image_dim": 128,
    "latent_dim": 16,
    "text_noise": 0.4,
    "image_noise": 0.6,
    "seed": 7
  }
}
)");
}

// Every value of every enum key: its name parses to it (from a file, from --set and through
// from_string) and config_to_json writes the name back.
template <typename Enum>
void expect_names_round_trip(const std::string& key, std::initializer_list<Enum> values,
                             Enum Config::*member) {
  for (Enum v : values) {
    const std::string name = zscrgan::to_string(v);
    EXPECT_EQ(zscrgan::from_string<Enum>(name, key), v) << name;
    const Config from_file = parse_config("{\"" + key + "\": \"" + name + "\"}", "x");
    EXPECT_EQ(from_file.*member, v) << name;
    EXPECT_EQ(parse_config("{}", "x", {key + "=" + name}).*member, v) << name;
    const auto j = nlohmann::json::parse(zscrgan::config_to_json(from_file));
    EXPECT_EQ(j.at(key), name);
  }
}

TEST(Config, EnumKeysReadAndWriteTheirNames) {
  using namespace zscrgan;
  expect_names_round_trip("ap_divisor", {ApDivisor::RelevantInTopK, ApDivisor::MinRelevantK},
                          &Config::ap_divisor);
  expect_names_round_trip("train_texts", {TrainTexts::First, TrainTexts::All}, &Config::train_texts);
  expect_names_round_trip("device", {DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda},
                          &Config::device);
  expect_names_round_trip("retrieval_record",
                          {RetrievalRecord::Json, RetrievalRecord::Pkl, RetrievalRecord::Both},
                          &Config::retrieval_record);
  EXPECT_STREQ(to_string(DeviceChoice::Cuda), "cuda");
  EXPECT_STREQ(to_string(RetrievalRecord::Pkl), "pkl");
  // The same names and message at a string boundary (the CLI's --device, infer's options).
  EXPECT_EQ(error_of([] { from_string<DeviceChoice>("gpu", "--device"); }),
            "--device must be one of auto, cpu, cuda; got \"gpu\"");
  EXPECT_EQ(error_of([] { from_string<RetrievalRecord>("JSON", "retrieval_record"); }),
            "retrieval_record must be one of json, pkl, both; got \"JSON\"");
  // An enum's name is checked with the ranges, after the overrides: one can repair the file.
  EXPECT_EQ(parse_config(R"({"device": "gpu"})", "x", {"device=cpu"}).device, DeviceChoice::Cpu);
  EXPECT_EQ(err(R"({"device": "gpu"})", {"rounds=2"}),
            "configs/x.json: key 'device' must be one of auto, cpu, cuda; got \"gpu\"");
  EXPECT_EQ(err("{}", {"retrieval_record=csv"}),
            "--set retrieval_record: key 'retrieval_record' must be one of json, pkl, both; got "
            "\"csv\"");
  // The bytes_hex form every string key accepts reaches the enum keys too.
  EXPECT_EQ(parse_config(R"({"retrieval_record": {"bytes_hex": "706b6c"}})", "x").retrieval_record,
            RetrievalRecord::Pkl);
}

// The keys a resumed run may change: how long, where and on what to run, and which records it
// writes; everything that shapes the model or its training is fixed by the checkpoint, and
// so are the metrics' definition (top_k, the K of the Precision@K that picks the best round,
// and ap_divisor, what mAP@K divides by).
TEST(Config, ResumableKeys) {
  const std::vector<std::string> expected = {
      "epochs",    "dataset",     "rounds",     "time_budget_s",    "device",
      "tf32",      "cuda_graphs", "output_dir", "retrieval_record", "datasets_root"};
  std::vector<std::string> resumable;
  const auto j = nlohmann::ordered_json::parse(zscrgan::config_to_json(Config{}));
  for (auto it = j.begin(); it != j.end(); ++it)
    if (zscrgan::config_key_resumable(it.key())) resumable.push_back(it.key());
  EXPECT_EQ(resumable, expected);
  EXPECT_FALSE(zscrgan::config_key_resumable("synthetic"));
  EXPECT_FALSE(zscrgan::config_key_resumable("synthetic.seed"));
  EXPECT_FALSE(zscrgan::config_key_resumable("no_such_key"));
}

// Each key config_to_json writes has exactly one row in the generated key list, with the
// default config_to_json writes for a default Config.
TEST(Config, KeysMarkdownHasOneRowPerKey) {
  const std::string md = zscrgan::config_keys_markdown();
  const auto j = nlohmann::ordered_json::parse(zscrgan::config_to_json(Config{}));
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = md.find(needle); at != std::string::npos; at = md.find(needle, at + 1)) ++n;
    return n;
  };
  size_t keys = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    ++keys;
    if (it.value().is_object()) {
      EXPECT_EQ(count("| `" + it.key() + "` | object | see below |"), 1u) << it.key();
      for (auto in = it.value().begin(); in != it.value().end(); ++in, ++keys)
        EXPECT_EQ(count("| `" + it.key() + "." + in.key() + "` | "), 1u) << in.key();
      continue;
    }
    const std::string shown = it.value().is_string() ? "`" + it.value().dump() + "`" : it.value().dump();
    EXPECT_EQ(count("| `" + it.key() + "` | "), 1u) << it.key();
    EXPECT_NE(md.find("| `" + it.key() + "` | "), std::string::npos);
    EXPECT_NE(md.find(" | " + shown + " | ", md.find("| `" + it.key() + "` | ")), std::string::npos)
        << it.key() << " default " << shown;
  }
  EXPECT_EQ(count("\n| `"), keys);
  EXPECT_NE(md.find("| `retrieval_record` | string | `\"json\"` | `json`, `pkl`, `both` | "),
            std::string::npos)
      << md;
}

// configs/README.md's key list is the table's: a key added, removed or documented differently
// in src/config/config.cc without ./build/update_config_readme fails here, and so does an edit
// of the README's list by hand.
TEST(Config, ReadmeKeyListMatchesTheTable) {
  namespace cr = zscrgan::config_readme;
  const std::string text = zscrgan::read_text_file(cr::kPath);
  const std::string generated = cr::with_generated_keys(text, cr::kPath);
  if (generated == text) return;
  // Name the first line that differs.
  const std::string have = cr::split(text, cr::kPath).keys;
  const std::string want = cr::split(generated, cr::kPath).keys;
  size_t line = 1, at = 0;
  while (at < have.size() && at < want.size() && have[at] == want[at]) line += have[at++] == '\n';
  auto line_at = [&](const std::string& s) {
    const size_t start = s.rfind('\n', at == 0 ? 0 : at - 1);
    const size_t from = start == std::string::npos || at == 0 ? 0 : start + 1;
    return s.substr(from, s.find('\n', from) - from);
  };
  ADD_FAILURE() << cr::kPath << ": the key list differs from the table in src/config/config.cc "
                << "at line " << line << " of the list;\n  README: " << line_at(have)
                << "\n  table:  " << line_at(want)
                << "\nrun ./build/update_config_readme to rewrite it from the table";
}

TEST(Config, LoadConfigFromFile) {
  ScopedTempDir tmp;
  const std::string path = tmp.file("c.json");
  zscrgan_test::write_bytes(path, R"({"rounds": 2})");
  EXPECT_EQ(zscrgan::load_config(path, {"rounds=5"}).rounds, 5);
  zscrgan_test::write_bytes(path, R"({"rounds": "2"})");
  EXPECT_EQ(error_of([&] { zscrgan::load_config(path); }).rfind(path + ": key 'rounds'", 0), 0u);
  const std::string missing = tmp.file("missing.json");
  EXPECT_EQ(error_of([&] { zscrgan::load_config(missing); }).rfind(missing + ": cannot open", 0),
            0u);
}

TEST(Config, ShippedConfigsParse) {
  const std::string root = ZSCRGAN_SOURCE_DIR;
  const Config demo = zscrgan::load_config(root + "/configs/demo.json");
  EXPECT_EQ(demo.dataset, "synthetic");
  EXPECT_EQ(demo.batch_size, 32);
  EXPECT_EQ(demo.gf_dim, 256);
  EXPECT_EQ(demo.df_dim, 128);
  EXPECT_EQ(demo.embed_dim, 64);
  EXPECT_EQ(demo.z_dim, 32);
  EXPECT_EQ(demo.rounds, 30);
  EXPECT_EQ(demo.output_dir, "runs/demo");

  const Config cub = zscrgan::load_config(root + "/configs/cub.json");
  EXPECT_EQ(cub.dataset, "CUB");
  EXPECT_EQ(cub.output_dir, "runs/cub");
  EXPECT_EQ(cub.batch_size, 32);
  EXPECT_EQ(cub.gf_dim, 2048);
  EXPECT_EQ(cub.df_dim, 1024);
  EXPECT_EQ(cub.embed_dim, 1024);
  EXPECT_EQ(cub.z_dim, 256);
  EXPECT_EQ(cub.CSEM_lr, 0.002);
  EXPECT_EQ(cub.generator_lr, 0.0002);
  EXPECT_EQ(cub.discriminator_lr, 0.0002);
  EXPECT_EQ(cub.kl_div_coefficient, 1.0);
  EXPECT_EQ(cub.mm_reg_coeff, 2.0);
  EXPECT_EQ(cub.clip_val, 0.01);
}

}  // namespace
