// zscrgan_cuda: the command-line program. Parses arguments, maps errors to exit codes:
//   0 success, 1 bad input or runtime error, 2 usage error, 3 training diverged,
//   130 / 143 stopped by SIGINT / SIGTERM (state saved; the line printed says how to resume).
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/checkpoint.h"
#include "config/config.h"
#include "core/error.h"
#include "import/importers.h"
#include "infer/inference.h"
#include "train/run.h"
#include "train/trainer.h"
#include "core/version.h"
#include "data/dataset_source.h"

namespace {

const char* kUsage =
    "usage:\n"
    "  zscrgan_cuda --config FILE [--set KEY=VALUE ...] [--device auto|cpu|cuda] [--overwrite]\n"
    "  zscrgan_cuda --resume DIR [--config FILE] [--set KEY=VALUE ...]\n"
    "  zscrgan_cuda import --format xlsa17|gazsl|interchange --input DIR --output DIR\n"
    "                      [--class-embedding F.npy] [--original-att] [--split easy|hard] [--name N]\n"
    "  zscrgan_cuda synthetic --out DIR [--config FILE] [--set synthetic.KEY=VALUE ...]\n"
    "  zscrgan_cuda embed --checkpoint F [--texts T.npy] [--images I.npy] --out DIR\n"
    "                     [--samples S] [--seed N] [--device D] [--chunk-rows N]\n"
    "  zscrgan_cuda retrieve --checkpoint F --texts T.npy --gallery I.npy --out R.json\n"
    "                        [--top-k K] [--samples S] [--seed N] [--device D] [--chunk-rows N]\n"
    "  zscrgan_cuda evaluate --checkpoint F [--config FILE] [--set KEY=VALUE ...] [--device D]\n"
    "\n"
    "Training (the first two forms) runs the EM schedule, evaluates Precision@K after every\n"
    "round, keeps the best retrieval results and checkpoints under the config's output_dir.\n"
    "\n"
    "training options:\n"
    "  --config FILE        JSON configuration (configs/README.md lists every key)\n"
    "  --set KEY=VALUE      override a config key; dotted keys reach nested objects\n"
    "                       (e.g. --set rounds=5 --set synthetic.seed=3); repeatable\n"
    "  --device DEVICE      auto (GPU when usable, else CPU), cpu or cuda\n"
    "  --resume DIR         continue the run in DIR from DIR/checkpoints/last.safetensors;\n"
    "                       without --config, the checkpoint's own configuration is used\n"
    "  --overwrite          let a new run replace an earlier run in its output_dir (without it,\n"
    "                       a new run refuses a folder that holds one)\n"
    "  --help, --version\n";

struct UsageError : zscrgan::Error {
  using Error::Error;
};

// "--name value" and "--flag" options of a subcommand. Only --set may be given more than once:
// a second value of any other option is refused, not left to override the first.
class Options {
 public:
  Options(int argc, char** argv, int first, const std::vector<std::string>& flags) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument " + zscrgan::in_quotes(a));
      bool is_flag = false;
      for (const auto& f : flags) is_flag |= f == a;
      if (is_flag) {
        values_[a].push_back("1");
      } else {
        if (i + 1 >= argc) throw UsageError(zscrgan::printable(a) + " needs a value");
        if (a != "--set" && values_.count(a))
          throw UsageError(zscrgan::printable(a) + " is given twice (" + zscrgan::in_quotes(values_[a].back()) +
                           ", " + zscrgan::in_quotes(argv[i + 1]) + "); give it once");
        values_[a].push_back(argv[++i]);
      }
    }
  }
  bool has(const std::string& k) const { return values_.count(k) > 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second.back();
  }
  std::string need(const std::string& k) const {
    if (!has(k)) throw UsageError(k + " is required");
    return get(k);
  }
  std::vector<std::string> all(const std::string& k) const {
    auto it = values_.find(k);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  // An integer option parsed into its real type: decimal digits only (a '-' only where lo < 0),
  // within [lo, hi]; anything else, including values that would wrap, is a usage error.
  template <typename T>
  T integer(const std::string& k, T def, T lo, T hi) const {
    if (!has(k)) return def;
    const std::string v = get(k);
    const std::string range = " in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    const bool negative = !v.empty() && v[0] == '-';
    const size_t digits_from = negative ? 1 : 0;
    if (v.size() == digits_from || v.find_first_not_of("0123456789", digits_from) != std::string::npos ||
        (negative && lo >= 0))
      throw UsageError(k + " needs an integer" + range + ", got " + zscrgan::in_quotes(v));
    errno = 0;
    bool in_range;
    T out{};
    if constexpr (std::is_signed_v<T>) {
      const long long n = std::strtoll(v.c_str(), nullptr, 10);
      in_range = errno != ERANGE && n >= static_cast<long long>(lo) && n <= static_cast<long long>(hi);
      out = static_cast<T>(n);
    } else {
      const unsigned long long n = std::strtoull(v.c_str(), nullptr, 10);
      in_range = errno != ERANGE && n >= lo && n <= hi;
      out = static_cast<T>(n);
    }
    if (!in_range) throw UsageError(k + " must be an integer" + range + ", got " + zscrgan::in_quotes(v));
    return out;
  }
  void only(const std::vector<std::string>& allowed) const {
    for (const auto& [k, v] : values_) {
      bool ok = false;
      for (const auto& a : allowed) ok |= a == k;
      if (!ok) throw UsageError("unknown option " + zscrgan::in_quotes(k));
    }
  }

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

// --device's value, checked here so that a bad one is named as the option the user gave.
std::string device_option(const Options& o) {
  const std::string d = o.get("--device", "auto");
  if (d != "auto" && d != "cpu" && d != "cuda")
    throw UsageError("--device must be auto, cpu or cuda; got \"" + zscrgan::printable(d, 100) + "\"");
  return d;
}

int run_train(const Options& o) {
  o.only({"--config", "--set", "--device", "--resume", "--overwrite"});
  std::vector<std::string> overrides = o.all("--set");
  if (o.has("--device")) overrides.push_back("device=" + device_option(o));
  zscrgan::RunOptions opts;
  opts.resume_dir = o.get("--resume");
  opts.overwrite = o.has("--overwrite");
  if (opts.overwrite && !opts.resume_dir.empty())
    throw UsageError("--overwrite replaces an earlier run; --resume continues it: give one of them");
  if (!opts.resume_dir.empty())
    for (const std::string& kv : o.all("--set"))
      if (kv.rfind("output_dir=", 0) == 0)
        throw UsageError("--set " + kv + ": a resumed run stays in its folder " + opts.resume_dir +
                         "; copy that folder to continue the run elsewhere");
  zscrgan::Config cfg;
  if (o.has("--config")) {
    cfg = zscrgan::load_config(o.get("--config"), overrides);
  } else if (!opts.resume_dir.empty()) {
    const std::string last =
        (std::filesystem::path(opts.resume_dir) / "checkpoints" / "last.safetensors").string();
    opts.resume_checkpoint =
        std::make_shared<const zscrgan::OpenedCheckpoint>(zscrgan::open_checkpoint(last));
    cfg = zscrgan::checkpoint_config(*opts.resume_checkpoint, overrides);
  } else {
    throw UsageError("--config FILE (or --resume DIR) is required");
  }
  if (!opts.resume_dir.empty()) {
    // A resumed run stays in its folder, whatever output_dir the given config file names.
    auto folder = [](const std::string& p) {  // "a/./b/" and "a/b" name one folder
      std::filesystem::path f = std::filesystem::path(p).lexically_normal();
      return f.filename().empty() ? f.parent_path() : f;
    };
    if (o.has("--config") && folder(cfg.output_dir) != folder(opts.resume_dir))
      std::cout << "note: the run stays in " << opts.resume_dir << "; " << o.get("--config")
                << "'s output_dir " << cfg.output_dir << " is not used\n";
    cfg.output_dir = opts.resume_dir;
  }
  const zscrgan::RunSummary s = zscrgan::run_training(cfg, std::cout, std::move(opts));
  if (s.stopped_by_signal != 0) return 128 + s.stopped_by_signal;
  return 0;
}

int run_import(const Options& o) {
  o.only({"--format", "--input", "--output", "--class-embedding", "--original-att", "--split", "--name"});
  zscrgan::ImportOptions io;
  io.format = o.need("--format");
  io.input = o.need("--input");
  io.output = o.need("--output");
  io.class_embedding = o.get("--class-embedding");
  io.original_att = o.has("--original-att");
  io.split = o.get("--split");
  io.name = o.get("--name");
  zscrgan::run_import(io, std::cout);
  return 0;
}

// Writes the embedded synthetic dataset (the config's "synthetic" settings) as an interchange
// folder, so other tools can read exactly what the demo trains on.
int run_synthetic(const Options& o) {
  o.only({"--out", "--config", "--set"});
  const std::string out = o.need("--out");
  for (const std::string& kv : o.all("--set"))
    if (kv.rfind("synthetic.", 0) != 0)
      throw UsageError("--set " + zscrgan::in_quotes(kv) +
                       ": synthetic reads only the synthetic.* keys (e.g. --set synthetic.seed=3)");
  const zscrgan::Config cfg = o.has("--config") ? zscrgan::load_config(o.get("--config"), o.all("--set"))
                                                : zscrgan::parse_config("{}", "--set", o.all("--set"));
  const zscrgan::Dataset d = zscrgan::make_synthetic_dataset(cfg.synthetic);
  zscrgan::write_dataset_folder(d, out);
  std::cout << "wrote " << out << ": " << d.train_classes.size() << " seen / " << d.test_classes.size()
            << " unseen classes, images " << d.image_features.rows << " x " << d.image_features.cols
            << ", texts " << d.text_features.rows << " x " << d.text_features.cols << "\n";
  return 0;
}

int run_embed(const Options& o) {
  o.only({"--checkpoint", "--texts", "--images", "--out", "--samples", "--seed", "--device", "--chunk-rows"});
  zscrgan::EmbedOptions e;
  e.checkpoint = o.need("--checkpoint");
  e.texts = o.get("--texts");
  e.images = o.get("--images");
  if (e.texts.empty() && e.images.empty()) throw UsageError("embed needs --texts and/or --images");
  e.out_dir = o.need("--out");
  // Options that would change nothing for the inputs given.
  if (e.texts.empty())
    for (const char* k : {"--samples", "--seed"})
      if (o.has(k)) throw UsageError(std::string(k) + " shapes the text queries; embed was given no --texts");
  if (e.images.empty() && o.has("--chunk-rows"))
    throw UsageError("--chunk-rows sets the image rows per pass; embed was given no --images");
  e.samples = o.integer<int>("--samples", 1, 1, INT_MAX);
  e.seed = o.integer<uint64_t>("--seed", 0, 0, UINT64_MAX);
  e.device = device_option(o);
  e.chunk_rows = o.integer<int64_t>("--chunk-rows", e.chunk_rows, 1, INT_MAX);
  zscrgan::run_embed(e, std::cout);
  return 0;
}

int run_retrieve(const Options& o) {
  o.only({"--checkpoint", "--texts", "--gallery", "--out", "--top-k", "--samples", "--seed", "--device", "--chunk-rows"});
  zscrgan::RetrieveOptions r;
  r.checkpoint = o.need("--checkpoint");
  r.texts = o.need("--texts");
  r.gallery = o.need("--gallery");
  r.out = o.need("--out");
  r.top_k = o.integer<int>("--top-k", 50, 1, INT_MAX);
  r.samples = o.integer<int>("--samples", 1, 1, INT_MAX);
  r.seed = o.integer<uint64_t>("--seed", 0, 0, UINT64_MAX);
  r.device = device_option(o);
  r.chunk_rows = o.integer<int64_t>("--chunk-rows", r.chunk_rows, 1, INT_MAX);
  zscrgan::run_retrieve(r, std::cout);
  return 0;
}

int run_evaluate(const Options& o) {
  o.only({"--checkpoint", "--config", "--set", "--device"});
  zscrgan::EvaluateOptions e;
  e.checkpoint = o.need("--checkpoint");
  e.config = o.get("--config");
  e.overrides = o.all("--set");
  e.device = device_option(o);
  zscrgan::run_evaluate(e, std::cout);
  return 0;
}

int dispatch(int argc, char** argv) {
  const std::string first = argc > 1 ? argv[1] : "";
  if (first == "import") return run_import(Options(argc, argv, 2, {"--original-att"}));
  if (first == "embed") return run_embed(Options(argc, argv, 2, {}));
  if (first == "synthetic") return run_synthetic(Options(argc, argv, 2, {}));
  if (first == "retrieve") return run_retrieve(Options(argc, argv, 2, {}));
  if (first == "evaluate") return run_evaluate(Options(argc, argv, 2, {}));
  return run_train(Options(argc, argv, 1, {"--overwrite"}));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (!std::strcmp(argv[i], "--version")) {
      std::printf("zscrgan_cuda %s\n", zscrgan::version());
      return 0;
    }
  }
  // Every message ends up as one line: whatever a message quotes is escaped where it is built,
  // and the whole line once more here, so that no byte from the input can break it.
  auto report = [](const std::string& prefix, const std::string& message, const char* suffix) {
    std::fprintf(stderr, "zscrgan_cuda: %s%s%s\n", prefix.c_str(),
                 zscrgan::printable(message, 4000).c_str(), suffix);
  };
  try {
    return dispatch(argc, argv);
  } catch (const UsageError& e) {
    report("", e.what(), " (see --help)");
    return 2;
  } catch (const zscrgan::DivergenceError& e) {
    report("", e.what(), "");  // the message says whether a good checkpoint remains
    return 3;
  } catch (const zscrgan::Error& e) {
    report("error: ", e.what(), "");
    return 1;
  } catch (const std::bad_alloc&) {
    report("error: ", "out of memory", "");
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    report("error: file system: ", e.what(), "");
    return 1;
  } catch (const nlohmann::json::exception& e) {
    report("internal error: unexpected JSON library exception: ", e.what(), "");
    return 1;
  } catch (const std::exception& e) {
    report("internal error: unexpected exception: ", e.what(), "");
    return 1;
  } catch (...) {
    report("internal error: ", "an exception of unknown type", "");
    return 1;
  }
}
