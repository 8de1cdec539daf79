// Rewrites configs/README.md's key list (between its markers) from the config table
// (config_keys_markdown), leaving the rest of the file as it is. Run it after changing a key's
// row in src/config/config.cc; the Config.ReadmeKeyListMatchesTheTable test fails until then.
#include <cstdio>
#include <exception>
#include <string>

#include "config_readme.h"
#include "core/fileio.h"

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [README.md]  (default %s)\n", argv[0],
                 zscrgan::config_readme::kPath);
    return 2;
  }
  const std::string path = argc == 2 ? argv[1] : zscrgan::config_readme::kPath;
  try {
    const std::string old_text = zscrgan::read_text_file(path);
    const std::string new_text = zscrgan::config_readme::with_generated_keys(old_text, path);
    if (new_text == old_text) {
      std::printf("%s: the key list is up to date\n", path.c_str());
      return 0;
    }
    zscrgan::write_file_atomic(path, new_text);
    std::printf("rewrote the key list of %s\n", path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "update_config_readme: %s\n", e.what());
    return 1;
  }
  return 0;
}
