// Internal: strict JSON parsing shared by the config and dataset.json readers.
#ifndef ZSCRGAN_SRC_JSON_STRICT_H
#define ZSCRGAN_SRC_JSON_STRICT_H

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zscrgan {
namespace detail {

// Parses `text`; malformed JSON and duplicate keys fail with "<source>:<line>:<col>: ...".
nlohmann::json parse_json_strict(const std::string& text, const std::string& source);

// The JSON type of `v` in words, with a short excerpt of the value: `string "32"`.
std::string describe_json(const nlohmann::json& v);

// The candidate closest to `key` by edit distance, or "" when none is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace detail
}  // namespace zscrgan

#endif  // ZSCRGAN_SRC_JSON_STRICT_H
