// zscrgan_cuda: the command-line program. Parses arguments, maps errors to exit codes.
//   0 success, 1 bad input or runtime error, 2 usage error, 3 training diverged.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "zscrgan/config.h"
#include "zscrgan/error.h"
#include "zscrgan/run.h"
#include "zscrgan/trainer.h"
#include "zscrgan/version.h"

namespace {

const char* kUsage =
    "usage: zscrgan_cuda --config FILE [--set KEY=VALUE ...] [--device auto|cpu|cuda]\n"
    "\n"
    "Trains ZSCRGAN with the EM schedule, evaluates Precision@K after every round and keeps\n"
    "the best retrieval results under the config's output_dir.\n"
    "\n"
    "options:\n"
    "  --config FILE        JSON configuration (see configs/README.md for every key)\n"
    "  --set KEY=VALUE      override a config key; dotted keys reach nested objects\n"
    "                       (e.g. --set rounds=5 --set synthetic.seed=3); repeatable\n"
    "  --device DEVICE      auto (GPU when usable, else CPU), cpu or cuda; overrides 'device'\n"
    "  --help               this text\n"
    "  --version            the version\n";

struct UsageError : zscrgan::Error {
  using Error::Error;
};

struct Args {
  std::string config;
  std::vector<std::string> overrides;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) throw UsageError(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (arg == "--config") a.config = value("--config");
    else if (arg == "--set") a.overrides.push_back(value("--set"));
    else if (arg == "--device") a.overrides.push_back("device=" + value("--device"));
    else throw UsageError("unknown argument '" + arg + "'");
  }
  if (a.config.empty()) throw UsageError("--config FILE is required");
  return a;
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
  try {
    const Args args = parse_args(argc, argv);
    const zscrgan::Config cfg = zscrgan::load_config(args.config, args.overrides);
    zscrgan::run_training(cfg, std::cout);
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "zscrgan_cuda: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const zscrgan::DivergenceError& e) {
    std::fprintf(stderr, "zscrgan_cuda: %s\n", e.what());
    return 3;
  } catch (const zscrgan::Error& e) {
    std::fprintf(stderr, "zscrgan_cuda: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zscrgan_cuda: error: %s\n", e.what());
    return 1;
  }
}
