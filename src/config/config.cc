// Strict JSON configuration. Every key is one row of fields() below: where it lives in Config,
// its type, its range (or its enum's names), its meaning and whether a resumed run may change
// it. Parsing, --set overrides, validation, config_to_json, config_key_resumable and
// config_keys_markdown (configs/README.md's key list) all walk that one table; the defaults
// are those of a default-constructed Config.
#include "config/config.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/fileio.h"
#include "core/json_strict.h"
#include "core/error.h"

namespace zscrgan {

using nlohmann::json;

namespace {

// ---- the enums' names ---------------------------------------------------------------------

struct EnumNames {
  const char* const* names;  // indexed by the enum's value
  int count;
};

template <typename Enum>
struct NamesOf;

#define ZS_ENUM_NAMES(Enum, last, ...)                                                   \
  template <>                                                                            \
  struct NamesOf<Enum> {                                                                 \
    static constexpr const char* names[] = {__VA_ARGS__};                                \
    static_assert(std::size(names) == static_cast<size_t>(Enum::last) + 1,               \
                  "one name for each value of " #Enum);                                  \
    static constexpr EnumNames list{names, static_cast<int>(std::size(names))};          \
  };

ZS_ENUM_NAMES(ApDivisor, MinRelevantK, "relevant_in_top_k", "min_relevant_k")
ZS_ENUM_NAMES(TrainTexts, All, "first", "all")
ZS_ENUM_NAMES(DeviceChoice, Cuda, "auto", "cpu", "cuda")
ZS_ENUM_NAMES(RetrievalRecord, Both, "json", "pkl", "both")

#undef ZS_ENUM_NAMES

// The index of `name` in `e`, or -1.
int enum_index(const EnumNames& e, const std::string& name) {
  for (int i = 0; i < e.count; ++i)
    if (name == e.names[i]) return i;
  return -1;
}

std::string joined(const EnumNames& e, const char* quote) {
  std::string list;
  for (int i = 0; i < e.count; ++i) list += std::string(i ? ", " : "") + quote + e.names[i] + quote;
  return list;
}

[[noreturn]] void not_one_of(const std::string& what, const EnumNames& e, const std::string& got) {
  fail(what, " must be one of ", joined(e, ""), "; got \"", printable(got), "\"");
}

// ---- the table ----------------------------------------------------------------------------

enum class Type { kInt, kDouble, kFloat, kUint64, kBool, kString, kEnum, kObject };

template <typename T>
constexpr Type type_of() {
  if constexpr (std::is_same_v<T, int>) return Type::kInt;
  else if constexpr (std::is_same_v<T, double>) return Type::kDouble;
  else if constexpr (std::is_same_v<T, float>) return Type::kFloat;
  else if constexpr (std::is_same_v<T, uint64_t>) return Type::kUint64;
  else if constexpr (std::is_same_v<T, bool>) return Type::kBool;
  else if constexpr (std::is_same_v<T, std::string>) return Type::kString;
  else if constexpr (std::is_enum_v<T>) return Type::kEnum;
  else static_assert(sizeof(T) == 0, "a config member of a type the table does not know");
}

// What a key accepts beyond its type (an enum accepts its names).
struct Range {
  enum Kind { kAny, kAtLeast, kPositive, kNonNegative, kNonEmpty } kind = kAny;
  long long lo = 0;                // kAtLeast
  long long hi = std::numeric_limits<int>::max();  // kAtLeast: and at most this
};
constexpr Range any() { return {Range::kAny, 0}; }
constexpr Range at_least(long long lo) { return {Range::kAtLeast, lo}; }
constexpr Range between(long long lo, long long hi) { return {Range::kAtLeast, lo, hi}; }
// "must be " + this, for a kAtLeast range.
std::string int_range_text(const Range& r) {
  if (r.hi == std::numeric_limits<int>::max()) return ">= " + std::to_string(r.lo);
  return "in [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]";
}
constexpr Range positive() { return {Range::kPositive, 0}; }
constexpr Range non_negative() { return {Range::kNonNegative, 0}; }
constexpr Range non_empty() { return {Range::kNonEmpty, 0}; }
// Upper bounds of the sizes, far above any published or plausible setting. Values near
// INT_MAX wrapped the int arithmetic that lays out the model and a round, and failed far from
// their key (or allocated without end); with the bounds a wrong value fails here, naming its
// key. Products of keys that size host buffers are checked in validate().
constexpr long long kMaxWidth = 16384;       // layer, embedding, noise, synthetic feature widths
constexpr long long kMaxBatch = 8192;
constexpr long long kMaxCritic = 100;        // n_critic
constexpr long long kMaxStepIters = 1000000; // e_step_iters, m_step_iters
constexpr long long kMaxCount = 1000000;     // the synthetic dataset's classes, images, texts
// A round's batch rows (four int32 arrays of them; 2^28 rows are 4 GiB) and the synthetic
// dataset's features (2^31 floats are 8 GiB).
constexpr long long kMaxRoundRows = 1ll << 28;
constexpr long long kMaxSyntheticFloats = 1ll << 31;

// Which heading of configs/README.md lists a top-level key (a nested one is listed under its
// object's own heading).
enum class Group { kPublished, kOurs };

struct Field {
  const char* path;  // dotted: "batch_size", "synthetic.seed"
  Type type;
  Range range;
  Group group;
  bool resumable;    // a resumed run may change it (config_key_resumable)
  const char* doc;   // configs/README.md's "meaning" cell
  const char* heading = nullptr;  // kObject: the README heading of its keys
  void* (*ref)(Config&) = nullptr;           // every type but kEnum and kObject
  const EnumNames* names = nullptr;          // kEnum
  int (*get_enum)(const Config&) = nullptr;  // kEnum
  void (*set_enum)(Config&, int) = nullptr;  // kEnum
};

#define ZS_MEMBER_TYPE(member) std::remove_reference_t<decltype(std::declval<Config&>().member)>

#define ZS_KEY(path, member, range, group, resumable, doc)                                    \
  [] {                                                                                        \
    static_assert(!std::is_enum_v<ZS_MEMBER_TYPE(member)>, path ": use ZS_ENUM_KEY");         \
    Field f{path, type_of<ZS_MEMBER_TYPE(member)>(), range, group, resumable, doc};           \
    f.ref = [](Config& c) -> void* { return &c.member; };                                     \
    return f;                                                                                 \
  }()

#define ZS_ENUM_KEY(path, member, group, resumable, doc)                                      \
  [] {                                                                                        \
    using E = ZS_MEMBER_TYPE(member);                                                         \
    Field f{path, Type::kEnum, any(), group, resumable, doc};                                 \
    f.names = &NamesOf<E>::list;                                                              \
    f.get_enum = [](const Config& c) { return static_cast<int>(c.member); };                  \
    f.set_enum = [](Config& c, int v) { c.member = static_cast<E>(v); };                      \
    return f;                                                                                 \
  }()

#define ZS_OBJECT(path, group, doc, title)                                                    \
  [] {                                                                                        \
    Field f{path, Type::kObject, any(), group, false, doc};                                   \
    f.heading = title;                                                                        \
    return f;                                                                                 \
  }()

constexpr Group kPub = Group::kPublished;
constexpr Group kOurs = Group::kOurs;
constexpr bool kResumable = true;
constexpr bool kFixed = false;

// Every key, in the order config_to_json writes them (an object before its keys).
const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      // the published names
      ZS_KEY("batch_size", batch_size, between(1, kMaxBatch), kPub, kFixed,
             "minibatch size of every training step"),
      ZS_KEY("gf_dim", gf_dim, between(1, kMaxWidth), kPub, kFixed, "hidden width of the generator"),
      ZS_KEY("df_dim", df_dim, between(1, kMaxWidth), kPub, kFixed,
             "hidden width of the critic (discriminator)"),
      ZS_KEY("embed_dim", embed_dim, between(1, kMaxWidth), kPub, kFixed,
             "width of the text embedding the CSEM produces and the generator is conditioned on"),
      ZS_KEY("CSEM_lr", CSEM_lr, positive(), kPub, kFixed,
             "learning rate of the CSEM (text embedding) updates in the M-step"),
      ZS_KEY("generator_lr", generator_lr, positive(), kPub, kFixed,
             "learning rate of the generator"),
      ZS_KEY("discriminator_lr", discriminator_lr, positive(), kPub, kFixed,
             "learning rate of the critic"),
      ZS_KEY("epochs", epochs, at_least(0), kPub, kResumable,
             "accepted for compatibility and unused: the published code declares it but its "
             "loop never reads it; the length of a run is set by `rounds` and `time_budget_s`"),
      ZS_KEY("kl_div_coefficient", kl_div_coefficient, non_negative(), kPub, kFixed,
             "weight of the KL term of the conditioning augmentation"),
      ZS_KEY("mm_reg_coeff", mm_reg_coeff, non_negative(), kPub, kFixed,
             "weight of the max-margin regulariser"),
      ZS_KEY("z_dim", z_dim, between(1, kMaxWidth), kPub, kFixed, "size of the generator's noise input"),
      ZS_KEY("clip_val", clip_val, positive(), kPub, kFixed,
             "the critic's weights are clipped to [-clip_val, clip_val] after each update"),
      ZS_KEY("dataset", dataset, non_empty(), kPub, kResumable,
             "a folder under `datasets_root`, or `synthetic` for the embedded dataset"),
      // ours
      ZS_KEY("rounds", rounds, at_least(0), kOurs, kResumable, "EM rounds to run"),
      ZS_KEY("time_budget_s", time_budget_s, non_negative(), kOurs, kResumable,
             "stop after the round that crosses this many seconds; 0: no budget"),
      ZS_KEY("e_step_iters", e_step_iters, between(0, kMaxStepIters), kOurs, kFixed,
             "E-step length: this many times (`n_critic` critic steps + 1 generator step)"),
      ZS_KEY("n_critic", n_critic, between(1, kMaxCritic), kOurs, kFixed,
             "critic steps per generator step"),
      ZS_KEY("m_step_iters", m_step_iters, between(0, kMaxStepIters), kOurs, kFixed,
             "M-step length in CSEM steps"),
      // Fixed on resume: the best round is the best Precision@K, and a best measured at one K
      // is no standard for a round measured at another; and metrics.jsonl's mAP column keeps
      // one meaning (`evaluate --set` measures a checkpoint with other values).
      ZS_KEY("top_k", top_k, at_least(1), kOurs, kFixed,
             "K of the retrieval metrics (Precision@K, mAP@K)"),
      ZS_ENUM_KEY("ap_divisor", ap_divisor, kOurs, kFixed,
                  "what AP@K divides by: the number of relevant images in the top K, or "
                  "min(relevant images in the gallery, K)"),
      ZS_ENUM_KEY("train_texts", train_texts, kOurs, kFixed,
                  "texts used for the seen classes: only each class's first text (published), "
                  "or all of them"),
      ZS_KEY("seed", seed, any(), kOurs, kFixed, "seed of initialisation, sampling and noise"),
      ZS_ENUM_KEY("device", device, kOurs, kResumable,
                  "backend; `auto` picks CUDA when a GPU is present"),
      ZS_KEY("tf32", tf32, any(), kOurs, kResumable, "allow TF32 tensor-core GEMMs on CUDA"),
      ZS_KEY("cuda_graphs", cuda_graphs, any(), kOurs, kResumable,
             "on CUDA, capture one E-step iteration (n_critic D steps + 1 G step) and one CSEM "
             "step as CUDA graphs and replay them; `false` issues every call eagerly (same "
             "results)"),
      ZS_KEY("output_dir", output_dir, non_empty(), kOurs, kResumable,
             "where results, logs and the effective config go"),
      ZS_ENUM_KEY("retrieval_record", retrieval_record, kOurs, kResumable,
                  "which best-retrieval records go under `retrieved/`: `acc<P@K>.json`, the "
                  "published `acc<P@K>.pkl` (a pickled list of one-key dicts, query class id -> "
                  "the retrieved images' class ids; protocol 2, loadable by Python 2 and 3), or "
                  "both"),
      ZS_KEY("datasets_root", datasets_root, non_empty(), kOurs, kResumable,
             "folder holding the dataset folders"),
      ZS_OBJECT("synthetic", kOurs,
                "the synthetic dataset's spec, used when `dataset` is `synthetic`",
                "the embedded dataset; model in `datasets/README.md`"),
      ZS_KEY("synthetic.seen_classes", synthetic.seen_classes, between(1, kMaxCount), kOurs, kFixed,
             "training classes"),
      ZS_KEY("synthetic.unseen_classes", synthetic.unseen_classes, between(1, kMaxCount), kOurs, kFixed,
             "test classes"),
      ZS_KEY("synthetic.images_per_class", synthetic.images_per_class, between(1, kMaxCount), kOurs,
             kFixed, "images per class"),
      ZS_KEY("synthetic.texts_per_class", synthetic.texts_per_class, between(1, kMaxCount), kOurs, kFixed,
             "texts per class"),
      ZS_KEY("synthetic.text_dim", synthetic.text_dim, between(1, kMaxWidth), kOurs, kFixed,
             "text feature size"),
      ZS_KEY("synthetic.image_dim", synthetic.image_dim, between(1, kMaxWidth), kOurs, kFixed,
             "image feature size"),
      ZS_KEY("synthetic.latent_dim", synthetic.latent_dim, between(1, kMaxWidth), kOurs, kFixed,
             "size of each class's latents"),
      ZS_KEY("synthetic.text_noise", synthetic.text_noise, non_negative(), kOurs, kFixed,
             "std of the noise on each text coordinate"),
      ZS_KEY("synthetic.image_noise", synthetic.image_noise, non_negative(), kOurs, kFixed,
             "std of the noise on each hidden unit of an image"),
      ZS_KEY("synthetic.seed", synthetic.seed, any(), kOurs, kFixed,
             "the dataset's seed (independent of `seed`)"),
  };
  return table;
}

#undef ZS_OBJECT
#undef ZS_ENUM_KEY
#undef ZS_KEY
#undef ZS_MEMBER_TYPE

const Field* find_field(const std::string& path) {
  for (const auto& f : fields())
    if (path == f.path) return &f;
  return nullptr;
}

// The nested objects (keys that hold other keys).
bool is_object_key(const std::string& path) {
  const Field* f = find_field(path);
  return f && f->type == Type::kObject;
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

// What parsing has seen so far: where each key was last set (for validation's messages) and
// the names given to enum keys, checked and converted by validate() once every override is in
// (so that an override can still repair the file, as for every other range).
struct Parsed {
  std::map<std::string, std::string> origins;
  std::map<std::string, std::string> enum_names;
};

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
    case Type::kEnum: return "a string";
    case Type::kObject: return "an object";
  }
  return "?";
}

[[noreturn]] void wrong_type(const std::string& origin, const Field& f, const json& v) {
  fail(origin, ": key '", f.path, "' must be ", type_words(f.type), ", got ",
       detail::describe_json(v));
}

// Checks `v` against the field's type and stores it (an enum's name waits in `parsed`).
void set_field(Config& c, const Field& f, const json& v, const std::string& origin,
               Parsed* parsed) {
  switch (f.type) {
    case Type::kInt: {
      if (!v.is_number_integer()) wrong_type(origin, f, v);
      const bool fits = v.is_number_unsigned()
                            ? v.get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX)
                            : v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
      if (!fits && f.range.kind == Range::kAtLeast)
        fail(origin, ": key '", f.path, "' must be ", int_range_text(f.range), ", got ", v.dump());
      if (!fits)
        fail(origin, ": key '", f.path, "' must be an integer in [", INT32_MIN, ", ", INT32_MAX,
             "], got ", v.dump());
      *static_cast<int*>(f.ref(c)) = static_cast<int>(v.get<int64_t>());
      break;
    }
    case Type::kDouble: {
      if (!v.is_number()) wrong_type(origin, f, v);
      const double d = v.get<double>();
      if (!std::isfinite(d)) fail(origin, ": key '", f.path, "' must be a finite number");
      *static_cast<double*>(f.ref(c)) = d;
      break;
    }
    case Type::kFloat: {
      if (!v.is_number()) wrong_type(origin, f, v);
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::fabs(d) > FLT_MAX)
        fail(origin, ": key '", f.path, "' must be a finite single-precision number, got ",
             v.dump());
      *static_cast<float*>(f.ref(c)) = static_cast<float>(d);
      break;
    }
    case Type::kUint64: {
      // nlohmann stores every non-negative integer literal as unsigned; negative ones are
      // signed and anything past 2^64-1 becomes a float.
      if (!v.is_number_unsigned()) wrong_type(origin, f, v);
      *static_cast<uint64_t*>(f.ref(c)) = v.get<uint64_t>();
      break;
    }
    case Type::kBool: {
      if (!v.is_boolean()) wrong_type(origin, f, v);
      *static_cast<bool*>(f.ref(c)) = v.get<bool>();
      break;
    }
    case Type::kString: {
      if (!detail::json_to_bytes(v, static_cast<std::string*>(f.ref(c)))) wrong_type(origin, f, v);
      break;
    }
    case Type::kEnum: {
      std::string name;
      if (!detail::json_to_bytes(v, &name)) wrong_type(origin, f, v);
      parsed->enum_names[f.path] = name;
      break;
    }
    case Type::kObject: break;  // apply_object walks into objects
  }
}

// Applies the members of `obj` (the object at `prefix`) to `c`; records each key's origin.
void apply_object(Config& c, const json& obj, const std::string& prefix,
                  const std::string& origin, Parsed* parsed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string path = prefix + it.key();
    if (it.key().find('.') != std::string::npos || it.key().empty())
      unknown_key(origin, path, prefix);  // dotted names are for --set only
    if (is_object_key(path)) {
      if (!it.value().is_object() || it.value().contains("bytes_hex"))
        fail(origin, ": key '", path, "' must be an object, got ",
             detail::describe_json(it.value()));
      apply_object(c, it.value(), path + ".", origin, parsed);
      continue;
    }
    const Field* f = find_field(path);
    if (!f) unknown_key(origin, path, prefix);
    set_field(c, *f, it.value(), origin, parsed);
    parsed->origins[path] = origin;
  }
}

void apply_override(Config& c, const std::string& text, Parsed* parsed) {
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
      apply_object(c, wrapper, prefix, origin, parsed);
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

// The ranges, in table order, once the file and every override are applied; converts the
// enum keys' names.
void validate(Config& c, const Parsed& parsed, const std::string& source) {
  for (const Field& f : fields()) {
    const auto at = parsed.origins.find(f.path);
    const std::string& origin = at == parsed.origins.end() ? source : at->second;
    if (f.type == Type::kEnum) {
      const auto given = parsed.enum_names.find(f.path);
      if (given == parsed.enum_names.end()) continue;  // the default
      const int i = enum_index(*f.names, given->second);
      if (i < 0) not_one_of(origin + ": key '" + f.path + "'", *f.names, given->second);
      f.set_enum(c, i);
      continue;
    }
    const void* p = f.ref ? f.ref(c) : nullptr;
    auto number = [&] {
      return f.type == Type::kFloat ? static_cast<double>(*static_cast<const float*>(p))
                                    : *static_cast<const double*>(p);
    };
    switch (f.range.kind) {
      case Range::kAny: break;
      case Range::kAtLeast: {
        const long long v = *static_cast<const int*>(p);
        if (v < f.range.lo || v > f.range.hi)
          fail(origin, ": key '", f.path, "' must be ", int_range_text(f.range), ", got ", v);
        break;
      }
      case Range::kPositive:
        if (!(number() > 0)) fail(origin, ": key '", f.path, "' must be > 0, got ", number());
        break;
      case Range::kNonNegative:
        if (!(number() >= 0)) fail(origin, ": key '", f.path, "' must be >= 0, got ", number());
        break;
      case Range::kNonEmpty:
        if (static_cast<const std::string*>(p)->empty())
          fail(origin, ": key '", f.path, "' must be a non-empty string");
        break;
    }
  }
  // Sizes that grow as products of keys within their ranges.
  const long long rows_per_round =
      (static_cast<long long>(c.e_step_iters) * (c.n_critic + 1) + c.m_step_iters) * c.batch_size;
  if (rows_per_round > kMaxRoundRows)
    fail(source, ": (e_step_iters x (n_critic + 1) + m_step_iters) x batch_size is ", rows_per_round,
         " batch rows a round, more than the ", kMaxRoundRows, " a round can hold");
  const SyntheticSpec& sy = c.synthetic;
  const long long synthetic_floats =
      (static_cast<long long>(sy.seen_classes) + sy.unseen_classes) *
      (static_cast<long long>(sy.images_per_class) * sy.image_dim + static_cast<long long>(sy.texts_per_class) * sy.text_dim);
  if (synthetic_floats > kMaxSyntheticFloats)
    fail(source, ": the synthetic dataset (classes x (images_per_class x image_dim + texts_per_class x text_dim)) "
         "would hold ", synthetic_floats, " floats, more than ", kMaxSyntheticFloats);
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

// A leaf key's value in `c`, as config_to_json writes it.
nlohmann::ordered_json value_of(Config& c, const Field& f) {
  using oj = nlohmann::ordered_json;
  switch (f.type) {
    case Type::kInt: return *static_cast<int*>(f.ref(c));
    case Type::kDouble: return *static_cast<double*>(f.ref(c));
    case Type::kFloat: return float_as_short_double(*static_cast<float*>(f.ref(c)));
    case Type::kUint64: return *static_cast<uint64_t*>(f.ref(c));
    case Type::kBool: return *static_cast<bool*>(f.ref(c));
    case Type::kString: return detail::bytes_to_json<oj>(*static_cast<std::string*>(f.ref(c)));
    case Type::kEnum: return f.names->names[f.get_enum(c)];
    case Type::kObject: break;
  }
  return oj::object();
}

template <typename Enum>
const char* name_of(Enum v) {
  return NamesOf<Enum>::names[static_cast<int>(v)];
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  const json root = detail::parse_json_strict(json_text, source);
  if (!root.is_object())
    fail(source, ": expected a JSON object at the top level, got ", detail::describe_json(root));
  Config c;
  Parsed parsed;
  apply_object(c, root, "", source, &parsed);
  for (const auto& o : overrides) apply_override(c, o, &parsed);
  validate(c, parsed, source);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  constexpr uint64_t kMaxConfigBytes = uint64_t(16) << 20;  // a config is a few kB
  return parse_config(read_text_file(path, kMaxConfigBytes), path, overrides);
}

std::string config_to_json(const Config& config) {
  Config c = config;  // fields() hands out mutable references
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& f : fields()) {
    if (f.type == Type::kObject) continue;  // made by its first key
    const std::string path = f.path;
    const size_t dot = path.find('.');
    nlohmann::ordered_json& slot =
        dot == std::string::npos ? out[path] : out[path.substr(0, dot)][path.substr(dot + 1)];
    slot = value_of(c, f);
  }
  return out.dump(2) + "\n";  // every string is valid UTF-8 (bytes_to_json)
}

bool config_key_resumable(const std::string& key) {
  const Field* f = find_field(key);
  return f && f->resumable;
}

std::string config_keys_markdown() {
  Config defaults;
  auto type_cell = [](Type t) -> std::string {
    switch (t) {
      case Type::kInt: case Type::kUint64: return "int";
      case Type::kDouble: case Type::kFloat: return "number";
      case Type::kBool: return "bool";
      case Type::kString: case Type::kEnum: return "string";
      case Type::kObject: return "object";
    }
    return "?";
  };
  auto default_cell = [&](const Field& f) -> std::string {
    if (f.type == Type::kObject) return "see below";
    const nlohmann::ordered_json v = value_of(defaults, f);
    return v.is_string() ? "`" + v.dump() + "`" : v.dump();
  };
  auto range_cell = [](const Field& f) -> std::string {
    if (f.type == Type::kEnum) return joined(*f.names, "`");
    switch (f.range.kind) {
      case Range::kAny: return f.type == Type::kUint64 ? "0 .. 2^64-1" : "";
      case Range::kAtLeast:
        return f.range.hi == std::numeric_limits<int>::max()
                   ? ">= " + std::to_string(f.range.lo)
                   : std::to_string(f.range.lo) + " .. " + std::to_string(f.range.hi);
      case Range::kPositive: return "> 0";
      case Range::kNonNegative: return ">= 0";
      case Range::kNonEmpty: return "non-empty";
    }
    return "?";
  };
  auto row = [](std::initializer_list<std::string> cells) {
    std::string line = "|";
    for (const std::string& cell : cells) line += cell.empty() ? " |" : " " + cell + " |";
    return line + "\n";
  };
  auto table = [&](const std::string& heading, auto&& wanted) {
    std::string text = "### " + heading + "\n\n| key | type | default | range | meaning |\n"
                       "|---|---|---|---|---|\n";
    for (const Field& f : fields())
      if (wanted(f))
        text += row({std::string("`") + f.path + "`", type_cell(f.type), default_cell(f),
                     range_cell(f), f.doc});
    return text;
  };
  auto top_level = [](const Field& f) { return std::string(f.path).find('.') == std::string::npos; };
  std::string out =
      table("The published hyper-parameters (names unchanged)",
            [&](const Field& f) { return top_level(f) && f.group == Group::kPublished; });
  out += "\n" + table("Ours", [&](const Field& f) { return top_level(f) && f.group == Group::kOurs; });
  for (const Field& object : fields()) {
    if (object.type != Type::kObject) continue;
    const std::string prefix = std::string(object.path) + ".";
    out += "\n" + table(std::string("`") + object.path + "` (" + object.heading + ")",
                        [&](const Field& f) { return std::string(f.path).rfind(prefix, 0) == 0; });
  }
  return out;
}

const char* to_string(ApDivisor v) { return name_of(v); }
const char* to_string(TrainTexts v) { return name_of(v); }
const char* to_string(DeviceChoice v) { return name_of(v); }
const char* to_string(RetrievalRecord v) { return name_of(v); }

template <typename Enum>
Enum from_string(const std::string& name, const std::string& what) {
  const int i = enum_index(NamesOf<Enum>::list, name);
  if (i < 0) not_one_of(what, NamesOf<Enum>::list, name);
  return static_cast<Enum>(i);
}

template ApDivisor from_string<ApDivisor>(const std::string&, const std::string&);
template TrainTexts from_string<TrainTexts>(const std::string&, const std::string&);
template DeviceChoice from_string<DeviceChoice>(const std::string&, const std::string&);
template RetrievalRecord from_string<RetrievalRecord>(const std::string&, const std::string&);

}  // namespace zscrgan
