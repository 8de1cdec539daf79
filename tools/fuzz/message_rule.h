// The one-line message rule every harness checks on each refusal: the message starts with the
// source it names, is one line (no newline, no other control byte), is valid UTF-8 whatever
// bytes the input held, and stays short (untrusted pieces are cut to a bounded length).
#ifndef ZSCRGAN_TOOLS_FUZZ_MESSAGE_RULE_H
#define ZSCRGAN_TOOLS_FUZZ_MESSAGE_RULE_H

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace fuzz {

[[noreturn]] inline void finding(const char* harness, const char* what, const std::string& message = "") {
  std::fprintf(stderr, "%s: %s%s%s\n", harness, what, message.empty() ? "" : ": ",
               zscrgan::printable(message, 2000).c_str());
  std::abort();
}

inline void check_message(const char* harness, const std::string& m, const std::string& source,
                          size_t max_bytes = 4096) {
  if (m.rfind(source, 0) != 0) finding(harness, "a message does not start with the source name", m);
  for (char c : m)
    if (c >= 0 && c < 0x20) finding(harness, "a message holds a control character", m);
  if (!zscrgan::is_valid_utf8(m)) finding(harness, "a message is not valid UTF-8", m);
  if (m.size() > max_bytes) finding(harness, "a message is longer than the bound", m);
}

}  // namespace fuzz

#endif  // ZSCRGAN_TOOLS_FUZZ_MESSAGE_RULE_H
