// configs/README.md's key list is generated from the config table (config_keys_markdown) and
// sits between two marker lines; tests/test_config.cc compares it, ./build/update_config_readme
// rewrites it.
#ifndef ZSCRGAN_TEST_CONFIG_README_H
#define ZSCRGAN_TEST_CONFIG_README_H

#include <string>

#include "config/config.h"
#include "core/error.h"

namespace zscrgan::config_readme {

inline const char* const kPath = ZSCRGAN_SOURCE_DIR "/configs/README.md";
inline const char* const kBegin =
    "<!-- The key list below is generated from the table in src/config/config.cc: "
    "./build/update_config_readme rewrites it. -->\n";
inline const char* const kEnd = "<!-- End of the generated key list. -->\n";

struct Parts {
  std::string before, keys, after;  // keys: the text between the marker lines
};

// Splits README text at the markers; an Error names `path` when a marker is missing.
inline Parts split(const std::string& text, const std::string& path) {
  const size_t b = text.find(kBegin);
  if (b == std::string::npos) fail(path, ": lacks the line ", printable(kBegin));
  const size_t keys = b + std::string(kBegin).size();
  const size_t e = text.find(kEnd, keys);
  if (e == std::string::npos) fail(path, ": lacks the line ", printable(kEnd), " after ", printable(kBegin));
  return {text.substr(0, keys), text.substr(keys, e - keys), text.substr(e)};
}

// `text` with the key list between its markers replaced by the table's.
inline std::string with_generated_keys(const std::string& text, const std::string& path) {
  const Parts p = split(text, path);
  return p.before + "\n" + config_keys_markdown() + "\n" + p.after;
}

}  // namespace zscrgan::config_readme

#endif  // ZSCRGAN_TEST_CONFIG_README_H
