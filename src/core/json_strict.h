// Internal (namespace detail): strict JSON parsing and JSON helpers for messages, shared by the
// config, dataset.json and checkpoint-metadata readers.
#ifndef ZSCRGAN_SRC_JSON_STRICT_H
#define ZSCRGAN_SRC_JSON_STRICT_H

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace zscrgan {
namespace detail {

// Documents nest at most this deep (objects and arrays); deeper ones are refused while parsing.
constexpr size_t kMaxJsonDepth = 64;

// Parses `text`; malformed JSON, duplicate keys and nesting past kMaxJsonDepth fail with
// "<source>:<line>:<col>: ..." or "<source>: ...".
nlohmann::json parse_json_strict(const std::string& text, const std::string& source);

// The JSON type of `v` in words, with a short, escaped excerpt of the value: `string "32"`.
// Containers are summarised from their first members, so the cost is bounded whatever `v` is.
std::string describe_json(const nlohmann::json& v);

// v.dump() that never throws: bytes that are not UTF-8 are replaced (for messages only).
std::string json_text(const nlohmann::json& v);

// A byte string as JSON: the string itself when it is valid UTF-8, otherwise
// {"bytes_hex": "<two hex digits per byte>"}, so that a path or a name that is not UTF-8 is
// written and read back byte for byte instead of being replaced.
template <typename Json>
Json bytes_to_json(const std::string& s) {
  if (is_valid_utf8(s)) return Json(s);
  static const char* hex = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h += hex[c >> 4];
    h += hex[c & 15];
  }
  Json o = Json::object();
  o["bytes_hex"] = h;
  return o;
}
// The reverse: a JSON string, or an object {"bytes_hex": "..."} of an even number of hex digits.
// False when `v` is neither (the caller names the key).
bool json_to_bytes(const nlohmann::json& v, std::string* out);

// The candidate closest to `key` by edit distance, or "" when none is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_JSON_STRICT_H
