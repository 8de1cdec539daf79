// Strict JSON configuration: every key is listed once in fields() below (name, type, where it
// lives in Config); parsing, overrides and config_to_json all walk that one table.
#include "config/config.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "core/fileio.h"
#include "core/json_strict.h"
#include "core/error.h"

namespace zscrgan {

using nlohmann::json;

namespace {

enum class Type { kInt, kDouble, kFloat, kUint64, kBool, kString };

struct Field {
  const char* path;  // dotted: "batch_size", "synthetic.seed"
  Type type;
  void* (*ref)(Config&);
};

#define ZS_FIELD(path, type, member) \
  Field { path, type, [](Config& c) -> void* { return &c.member; } }

// Every key, in the order config_to_json writes them.
const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      // the published names
      ZS_FIELD("batch_size", Type::kInt, batch_size),
      ZS_FIELD("gf_dim", Type::kInt, gf_dim),
      ZS_FIELD("df_dim", Type::kInt, df_dim),
      ZS_FIELD("embed_dim", Type::kInt, embed_dim),
      ZS_FIELD("CSEM_lr", Type::kDouble, CSEM_lr),
      ZS_FIELD("generator_lr", Type::kDouble, generator_lr),
      ZS_FIELD("discriminator_lr", Type::kDouble, discriminator_lr),
      ZS_FIELD("epochs", Type::kInt, epochs),
      ZS_FIELD("kl_div_coefficient", Type::kDouble, kl_div_coefficient),
      ZS_FIELD("mm_reg_coeff", Type::kDouble, mm_reg_coeff),
      ZS_FIELD("z_dim", Type::kInt, z_dim),
      ZS_FIELD("clip_val", Type::kDouble, clip_val),
      ZS_FIELD("dataset", Type::kString, dataset),
      // ours
      ZS_FIELD("rounds", Type::kInt, rounds),
      ZS_FIELD("time_budget_s", Type::kDouble, time_budget_s),
      ZS_FIELD("e_step_iters", Type::kInt, e_step_iters),
      ZS_FIELD("n_critic", Type::kInt, n_critic),
      ZS_FIELD("m_step_iters", Type::kInt, m_step_iters),
      ZS_FIELD("top_k", Type::kInt, top_k),
      ZS_FIELD("ap_divisor", Type::kString, ap_divisor),
      ZS_FIELD("train_texts", Type::kString, train_texts),
      ZS_FIELD("seed", Type::kUint64, seed),
      ZS_FIELD("device", Type::kString, device),
      ZS_FIELD("tf32", Type::kBool, tf32),
      ZS_FIELD("cuda_graphs", Type::kBool, cuda_graphs),
      ZS_FIELD("output_dir", Type::kString, output_dir),
      ZS_FIELD("retrieval_record", Type::kString, retrieval_record),
      ZS_FIELD("datasets_root", Type::kString, datasets_root),
      ZS_FIELD("synthetic.seen_classes", Type::kInt, synthetic.seen_classes),
      ZS_FIELD("synthetic.unseen_classes", Type::kInt, synthetic.unseen_classes),
      ZS_FIELD("synthetic.images_per_class", Type::kInt, synthetic.images_per_class),
      ZS_FIELD("synthetic.texts_per_class", Type::kInt, synthetic.texts_per_class),
      ZS_FIELD("synthetic.text_dim", Type::kInt, synthetic.text_dim),
      ZS_FIELD("synthetic.image_dim", Type::kInt, synthetic.image_dim),
      ZS_FIELD("synthetic.latent_dim", Type::kInt, synthetic.latent_dim),
      ZS_FIELD("synthetic.text_noise", Type::kFloat, synthetic.text_noise),
      ZS_FIELD("synthetic.image_noise", Type::kFloat, synthetic.image_noise),
      ZS_FIELD("synthetic.seed", Type::kUint64, synthetic.seed),
  };
  return table;
}

#undef ZS_FIELD

// The nested objects (keys that hold other keys).
bool is_object_key(const std::string& path) { return path == "synthetic"; }

const Field* find_field(const std::string& path) {
  for (const auto& f : fields())
    if (path == f.path) return &f;
  return nullptr;
}

// The keys directly inside `prefix` ("" for the top level, "synthetic." for the nested one),
// written as full dotted paths.
std::vector<std::string> keys_under(const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& f : fields()) {
    const std::string p = f.path;
    if (p.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = p.substr(prefix.size());
    const size_t dot = rest.find('.');
    const std::string key = prefix + rest.substr(0, dot);
    if (std::find(out.begin(), out.end(), key) == out.end()) out.push_back(key);
  }
  return out;
}

[[noreturn]] void unknown_key(const std::string& origin, const std::string& path,
                              const std::string& prefix) {
  // Suggest by the last part only, so a nested key is not judged by its shared prefix.
  std::vector<std::string> leaves;
  for (const auto& k : keys_under(prefix)) leaves.push_back(k.substr(prefix.size()));
  const std::string near = detail::closest_key(path.substr(prefix.size()), leaves);
  fail(origin, ": unknown key ", in_quotes(path),
       near.empty() ? std::string() : " (did you mean '" + prefix + near + "'?)");
}

const char* type_words(Type t) {
  switch (t) {
    case Type::kInt: return "an integer";
    case Type::kDouble: return "a number";
    case Type::kFloat: return "a number";
    case Type::kUint64: return "an integer in [0, 18446744073709551615]";
    case Type::kBool: return "true or false";
    case Type::kString: return "a string";
  }
  return "?";
}

[[noreturn]] void wrong_type(const std::string& origin, const Field& f, const json& v) {
  fail(origin, ": key '", f.path, "' must be ", type_words(f.type), ", got ",
       detail::describe_json(v));
}

void set_field(Config& c, const Field& f, const json& v, const std::string& origin) {
  void* p = f.ref(c);
  switch (f.type) {
    case Type::kInt: {
      if (!v.is_number_integer()) wrong_type(origin, f, v);
      const bool fits = v.is_number_unsigned()
                            ? v.get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX)
                            : v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
      if (!fits)
        fail(origin, ": key '", f.path, "' must be an integer in [", INT32_MIN, ", ", INT32_MAX,
             "], got ", v.dump());
      *static_cast<int*>(p) = static_cast<int>(v.get<int64_t>());
      break;
    }
    case Type::kDouble: {
      if (!v.is_number()) wrong_type(origin, f, v);
      const double d = v.get<double>();
      if (!std::isfinite(d)) fail(origin, ": key '", f.path, "' must be a finite number");
      *static_cast<double*>(p) = d;
      break;
    }
    case Type::kFloat: {
      if (!v.is_number()) wrong_type(origin, f, v);
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::fabs(d) > FLT_MAX)
        fail(origin, ": key '", f.path, "' must be a finite single-precision number, got ",
             v.dump());
      *static_cast<float*>(p) = static_cast<float>(d);
      break;
    }
    case Type::kUint64: {
      // nlohmann stores every non-negative integer literal as unsigned; negative ones are
      // signed and anything past 2^64-1 becomes a float.
      if (!v.is_number_unsigned()) wrong_type(origin, f, v);
      *static_cast<uint64_t*>(p) = v.get<uint64_t>();
      break;
    }
    case Type::kBool: {
      if (!v.is_boolean()) wrong_type(origin, f, v);
      *static_cast<bool*>(p) = v.get<bool>();
      break;
    }
    case Type::kString: {
      if (!detail::json_to_bytes(v, static_cast<std::string*>(p))) wrong_type(origin, f, v);
      break;
    }
  }
}

// Applies the members of `obj` (the object at `prefix`) to `c`; records each key's origin.
void apply_object(Config& c, const json& obj, const std::string& prefix,
                  const std::string& origin, std::map<std::string, std::string>* origins) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string path = prefix + it.key();
    if (it.key().find('.') != std::string::npos || it.key().empty())
      unknown_key(origin, path, prefix);  // dotted names are for --set only
    if (is_object_key(path)) {
      if (!it.value().is_object() || it.value().contains("bytes_hex"))
        fail(origin, ": key '", path, "' must be an object, got ",
             detail::describe_json(it.value()));
      apply_object(c, it.value(), path + ".", origin, origins);
      continue;
    }
    const Field* f = find_field(path);
    if (!f) unknown_key(origin, path, prefix);
    set_field(c, *f, it.value(), origin);
    (*origins)[path] = origin;
  }
}

void apply_override(Config& c, const std::string& text,
                    std::map<std::string, std::string>* origins) {
  const size_t eq = text.find('=');
  const std::string key = text.substr(0, eq);
  const std::string origin = "--set " + printable(key, 100);
  if (eq == std::string::npos) fail(origin, ": expected key=value");
  if (key.empty()) fail("--set ", printable(text, 100), ": expected key=value with a non-empty key");
  const std::string raw = text.substr(eq + 1);
  // Not JSON: the text itself, as a string. JSON nested too deep is refused, as in a file.
  const json::parser_callback_t bounded = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= static_cast<int>(detail::kMaxJsonDepth))
      fail(origin, ": JSON nested deeper than ", detail::kMaxJsonDepth, " levels");
    return true;
  };
  json value = json::parse(raw, bounded, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = raw;

  // Walk the dotted key through the nested objects.
  std::string prefix;
  size_t start = 0;
  for (;;) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    const std::string path = prefix + part;
    if (part.empty()) fail(origin, ": malformed key ", in_quotes(key, 100));
    if (dot == std::string::npos) {
      json wrapper = json::object();
      wrapper[part] = value;
      apply_object(c, wrapper, prefix, origin, origins);
      return;
    }
    if (!is_object_key(path)) {
      if (find_field(path)) fail(origin, ": unknown key ", in_quotes(key, 100), " ('", path, "' holds no keys)");
      unknown_key(origin, key, prefix);
    }
    prefix = path + ".";
    start = dot + 1;
  }
}

void check_ranges(const Config& c, const std::map<std::string, std::string>& origins,
                  const std::string& source) {
  auto origin = [&](const char* key) {
    auto it = origins.find(key);
    return it == origins.end() ? source : it->second;
  };
  auto at_least = [&](const char* key, long long v, long long lo) {
    if (v < lo) fail(origin(key), ": key '", key, "' must be >= ", lo, ", got ", v);
  };
  auto positive = [&](const char* key, double v) {
    if (!(v > 0)) fail(origin(key), ": key '", key, "' must be > 0, got ", v);
  };
  auto non_negative = [&](const char* key, double v) {
    if (!(v >= 0)) fail(origin(key), ": key '", key, "' must be >= 0, got ", v);
  };
  auto non_empty = [&](const char* key, const std::string& v) {
    if (v.empty()) fail(origin(key), ": key '", key, "' must be a non-empty string");
  };
  auto one_of = [&](const char* key, const std::string& v, std::vector<std::string> allowed) {
    if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(origin(key), ": key '", key, "' must be one of ", list, "; got \"", printable(v), "\"");
  };

  at_least("batch_size", c.batch_size, 1);
  at_least("gf_dim", c.gf_dim, 1);
  at_least("df_dim", c.df_dim, 1);
  at_least("embed_dim", c.embed_dim, 1);
  positive("CSEM_lr", c.CSEM_lr);
  positive("generator_lr", c.generator_lr);
  positive("discriminator_lr", c.discriminator_lr);
  at_least("epochs", c.epochs, 0);
  non_negative("kl_div_coefficient", c.kl_div_coefficient);
  non_negative("mm_reg_coeff", c.mm_reg_coeff);
  at_least("z_dim", c.z_dim, 1);
  positive("clip_val", c.clip_val);
  non_empty("dataset", c.dataset);
  at_least("rounds", c.rounds, 0);
  non_negative("time_budget_s", c.time_budget_s);
  at_least("e_step_iters", c.e_step_iters, 0);
  at_least("n_critic", c.n_critic, 1);
  at_least("m_step_iters", c.m_step_iters, 0);
  at_least("top_k", c.top_k, 1);
  one_of("ap_divisor", c.ap_divisor, {"relevant_in_top_k", "min_relevant_k"});
  one_of("train_texts", c.train_texts, {"first", "all"});
  one_of("retrieval_record", c.retrieval_record, {"json", "pkl", "both"});
  one_of("device", c.device, {"auto", "cpu", "cuda"});
  non_empty("output_dir", c.output_dir);
  non_empty("datasets_root", c.datasets_root);
  const SyntheticSpec& s = c.synthetic;
  at_least("synthetic.seen_classes", s.seen_classes, 1);
  at_least("synthetic.unseen_classes", s.unseen_classes, 1);
  at_least("synthetic.images_per_class", s.images_per_class, 1);
  at_least("synthetic.texts_per_class", s.texts_per_class, 1);
  at_least("synthetic.text_dim", s.text_dim, 1);
  at_least("synthetic.image_dim", s.image_dim, 1);
  at_least("synthetic.latent_dim", s.latent_dim, 1);
  non_negative("synthetic.text_noise", s.text_noise);
  non_negative("synthetic.image_noise", s.image_noise);
}

// The shortest decimal that reads back as the same float, as a double ("0.4", not
// "0.4000000059604645"), so saved configs stay readable and reload exactly.
double float_as_short_double(float f) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  const json root = detail::parse_json_strict(json_text, source);
  if (!root.is_object())
    fail(source, ": expected a JSON object at the top level, got ", detail::describe_json(root));
  Config c;
  std::map<std::string, std::string> origins;
  apply_object(c, root, "", source, &origins);
  for (const auto& o : overrides) apply_override(c, o, &origins);
  check_ranges(c, origins, source);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_config(read_text_file(path), path, overrides);
}

std::string config_to_json(const Config& config) {
  Config c = config;  // fields() hands out mutable references
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& f : fields()) {
    const std::string path = f.path;
    const size_t dot = path.find('.');
    nlohmann::ordered_json& slot =
        dot == std::string::npos ? out[path] : out[path.substr(0, dot)][path.substr(dot + 1)];
    void* p = f.ref(c);
    switch (f.type) {
      case Type::kInt: slot = *static_cast<int*>(p); break;
      case Type::kDouble: slot = *static_cast<double*>(p); break;
      case Type::kFloat: slot = float_as_short_double(*static_cast<float*>(p)); break;
      case Type::kUint64: slot = *static_cast<uint64_t*>(p); break;
      case Type::kBool: slot = *static_cast<bool*>(p); break;
      case Type::kString:
        slot = detail::bytes_to_json<nlohmann::ordered_json>(*static_cast<std::string*>(p));
        break;
    }
  }
  return out.dump(2) + "\n";  // every string is valid UTF-8 (bytes_to_json)
}

}  // namespace zscrgan
