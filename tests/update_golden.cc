// Rewrites tests/golden/end_to_end.json (or the path given) with golden::end_to_end_values(),
// the very computation tests/test_end_to_end.cc compares against it. Run it only when a change
// is meant to alter the end-to-end numbers, and say so in the commit.
#include <cstdio>
#include <exception>
#include <string>

#include "end_to_end_golden.h"
#include "core/fileio.h"

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [output.json]  (default %s)\n", argv[0],
                 zscrgan::golden::kEndToEndPath);
    return 2;
  }
  const std::string path = argc == 2 ? argv[1] : zscrgan::golden::kEndToEndPath;
  try {
    const std::string text = zscrgan::golden::end_to_end_values().dump(2) + "\n";
    zscrgan::write_file_atomic(path, text);
    std::printf("wrote %s\n%s", path.c_str(), text.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "update_golden: %s\n", e.what());
    return 1;
  }
  return 0;
}
