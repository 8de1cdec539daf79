// libFuzzer harness for the safetensors parser. Whatever the bytes, parse_safetensors must
// return a validated file or throw zscrgan::Error: any other exception, a crash, or a
// sanitizer report is a finding. Whatever it accepts must also write back out and parse to the
// same content, byte for byte. Built and run by tools/fuzz/run_fuzz.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n", what);
  std::abort();
}

bool same_content(const zscrgan::SafeTensorsFile& a, const zscrgan::SafeTensorsFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const zscrgan::SafeTensor& t : a.tensors) {
    const zscrgan::SafeTensor* u = b.find(t.name);
    if (!u || u->dtype != t.dtype || u->shape != t.shape || u->bytes != t.bytes) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zscrgan::SafeTensorsFile parsed;
  try {
    parsed = zscrgan::parse_safetensors(data, size, "fuzz");
  } catch (const zscrgan::Error& e) {
    // Refused cleanly: one line naming the source, with no raw control bytes from the input.
    const std::string m = e.what();
    if (m.rfind("fuzz: ", 0) != 0) finding("a message does not start with the source name");
    for (char c : m)
      if (c >= 0 && c < 0x20) finding("a message holds a control character");
    return 0;
  }
  size_t total = 0;
  for (const zscrgan::SafeTensor& t : parsed.tensors) {
    if (static_cast<uint64_t>(t.num_elements()) * zscrgan::safetensors_dtype_size(t.dtype) !=
        t.bytes.size())
      finding("an accepted tensor's bytes do not match its shape");
    total += t.bytes.size();
  }
  if (total > size) finding("accepted tensors hold more bytes than the input");

  std::vector<uint8_t> written;
  try {
    written = zscrgan::serialize_safetensors(parsed);
  } catch (const zscrgan::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    finding("an accepted file cannot be written back");
  }
  zscrgan::SafeTensorsFile again;
  try {
    again = zscrgan::parse_safetensors(written.data(), written.size(), "rewritten");
  } catch (const zscrgan::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    finding("a rewritten file is refused");
  }
  if (!same_content(parsed, again)) finding("a rewritten file holds different content");
  if (zscrgan::serialize_safetensors(again) != written) finding("rewriting is not idempotent");
  return 0;
}
