// libFuzzer harness for the config loader: the input is a config file's text, then (after a
// NUL byte) any number of NUL-separated "--set KEY=VALUE" overrides. parse_config must return a
// config or throw zscrgan::Error with a message that keeps the one-line rule (message_rule.h);
// an accepted config must write out (config_to_json) and load back to the same JSON. Any other
// exception, a crash or a sanitizer report is a finding. Built and run by
// tools/fuzz/run_fuzz.sh config.
#include <cstdint>
#include <string>
#include <vector>

#include "message_rule.h"
#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string text = all.substr(0, nul);
  std::vector<std::string> overrides;
  for (size_t at = nul; at != std::string::npos && at < all.size();) {
    const size_t next = all.find('\0', at + 1);
    overrides.push_back(all.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
    at = next;
  }
  zscrgan::Config c;
  try {
    c = zscrgan::parse_config(text, "fuzz.json", overrides);
  } catch (const zscrgan::Error& e) {
    const std::string m = e.what();
    // A refusal names the file, or the override it comes from.
    fuzz::check_message("fuzz_config", m, m.rfind("--set ", 0) == 0 ? "--set " : "fuzz.json");
    return 0;
  }
  const std::string written = zscrgan::config_to_json(c);
  std::string again;
  try {
    again = zscrgan::config_to_json(zscrgan::parse_config(written, "written"));
  } catch (const zscrgan::Error& e) {
    fuzz::finding("fuzz_config", "an accepted config does not load back", e.what());
  }
  if (again != written) fuzz::finding("fuzz_config", "an accepted config loads back different", written);
  return 0;
}
