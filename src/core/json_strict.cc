#include "core/json_strict.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/error.h"

namespace zscrgan {
namespace detail {

using nlohmann::json;

namespace {

// 1-based line and column of byte offset `byte` (1-based, as nlohmann reports it).
void line_and_column(const std::string& text, size_t byte, size_t* line, size_t* col) {
  *line = 1;
  *col = 1;
  const size_t end = std::min(byte > 0 ? byte - 1 : 0, text.size());
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++*line;
      *col = 1;
    } else {
      ++*col;
    }
  }
}

std::string dotted(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) {
    if (!out.empty()) out += '.';
    out += k;
  }
  return out;
}

}  // namespace

json parse_json_strict(const std::string& text, const std::string& source) {
  // Duplicate keys are an error: nlohmann keeps the last one silently, which would let a
  // typo'd second entry override the first without a word.
  std::vector<std::set<std::string>> seen;  // one set per open object
  std::vector<std::string> path;            // key of each open object's current member
  size_t depth = 0;                         // open objects and arrays
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        // Bounded so that no later step (a copy, a message quoting the value) can recurse
        // without limit through a hostile document.
        if (++depth > kMaxJsonDepth)
          fail(source, ": JSON nested deeper than ", kMaxJsonDepth, " levels",
               path.empty() || path.back().empty() ? std::string() : " (inside key " + in_quotes(dotted(path)) + ")");
        if (event == json::parse_event_t::object_start) {
          seen.emplace_back();
          path.emplace_back();
        }
        break;
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::object_end:
        --depth;
        if (!seen.empty()) seen.pop_back();
        if (!path.empty()) path.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string key = parsed.get<std::string>();
        if (!path.empty()) path.back() = key;
        if (!seen.empty() && !seen.back().insert(key).second)
          fail(source, ": duplicate key ", in_quotes(dotted(path)));
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, callback);
  } catch (const json::parse_error& e) {
    size_t line = 0, col = 0;
    line_and_column(text, e.byte, &line, &col);
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] parse error at line L, column C: ".
    const size_t at = what.find("parse error");
    size_t colon = at == std::string::npos ? std::string::npos : what.find(": ", at);
    std::string detail = colon == std::string::npos ? what : what.substr(colon + 2);
    fail(source, ":", line, ":", col, ": malformed JSON: ", printable(detail));
  } catch (const json::exception& e) {
    // e.g. out_of_range 406, "number overflow parsing '1e400'": no position is reported.
    std::string what = e.what();
    const size_t close = what.find("] ");
    fail(source, ": malformed JSON: ", printable(close == std::string::npos ? what : what.substr(close + 2)));
  }
}

std::string describe_json(const json& v) {
  // Containers are summarised, never dumped whole: only their first few members are shown.
  std::string dump;
  if (v.is_array() || v.is_object()) {
    dump = v.is_array() ? "[" : "{";
    size_t shown = 0;
    for (auto it = v.begin(); it != v.end() && shown < 3; ++it, ++shown) {
      if (shown) dump += ", ";
      if (v.is_object()) dump += json_text(json(it.key())) + ": ";
      dump += it->is_structured() ? (it->is_array() ? "[...]" : "{...}") : json_text(*it);
    }
    if (v.size() > shown) dump += ", ...";
    dump += v.is_array() ? "]" : "}";
    dump = printable(dump, 40);
  } else if (v.is_string()) {
    // The string's own bytes, escaped (a byte that is not UTF-8 shows as \xNN).
    dump = "\"" + printable(v.get_ref<const std::string&>(), 40) + "\"";
  } else {
    dump = printable(json_text(v), 40);
  }
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean " + dump;
    case json::value_t::string: return "string " + dump;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer " + dump;
    case json::value_t::number_float: return "number " + dump;
    case json::value_t::array: return "array " + dump;
    case json::value_t::object: return "object " + dump;
    default: return dump;
  }
}

std::string json_text(const json& v) {
  // Strings that are not UTF-8 are shown with the bad bytes replaced; the caller escapes the
  // result for its message.
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool json_to_bytes(const json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (!v.is_object() || v.size() != 1 || !v.contains("bytes_hex") || !v["bytes_hex"].is_string())
    return false;
  const std::string& h = v["bytes_hex"].get_ref<const std::string&>();
  if (h.size() % 2 != 0) return false;
  auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  std::string bytes;
  for (size_t i = 0; i < h.size(); i += 2) {
    const int hi = digit(h[i]), lo = digit(h[i + 1]);
    if (hi < 0 || lo < 0) return false;
    bytes += static_cast<char>(hi * 16 + lo);
  }
  *out = bytes;
  return true;
}

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const char ca = static_cast<char>(std::tolower(static_cast<unsigned char>(a[i - 1])));
        const char cb = static_cast<char>(std::tolower(static_cast<unsigned char>(b[j - 1])));
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca == cb ? 0 : 1)});
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = 0;
  for (const auto& c : candidates) {
    const size_t d = distance(key, c);
    if (best.empty() || d < best_d) {
      best = c;
      best_d = d;
    }
  }
  // Close enough to be a typo: a few edits, and fewer than half the key's letters.
  const size_t limit = std::max<size_t>(2, std::min(key.size(), best.size()) / 3);
  if (best.empty() || best_d > limit || best_d * 2 >= std::max(key.size(), size_t{1})) return "";
  return best;
}

}  // namespace detail
}  // namespace zscrgan
