#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/content_hash.h"
#include "core/fileio.h"
#include "core/json_strict.h"
#include "core/error.h"

namespace zscrgan {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kMetaFile = "dataset.json";
constexpr const char* kImageFeatures = "image_features.npy";
constexpr const char* kImageLabels = "image_labels.npy";
constexpr const char* kTextFeatures = "text_features.npy";
constexpr const char* kTextLabels = "text_labels.npy";

const std::set<std::string>& dataset_file_names() {
  static const std::set<std::string> names = {kMetaFile, kImageFeatures, kImageLabels,
                                              kTextFeatures, kTextLabels};
  return names;
}

std::string join(const std::string& dir, const char* file) {
  return (fs::path(dir) / file).string();
}

void check_matrix(const HostMatrix& m, const std::vector<int64_t>& labels, const char* what,
                  const char* labels_what, const std::string& where) {
  if (m.rows < 0 || m.cols < 0 || static_cast<int64_t>(m.data.size()) != m.rows * m.cols)
    fail(where, ": ", what, " is ", m.rows, " x ", m.cols, " but holds ", m.data.size(),
         " values");
  if (m.cols <= 0) fail(where, ": ", what, " has ", m.cols, " columns; the dimension must be > 0");
  if (m.rows != static_cast<int64_t>(labels.size()))
    fail(where, ": ", what, " has ", m.rows, " rows but ", labels_what, " has ", labels.size(),
         " entries");
  for (int64_t r = 0; r < m.rows; ++r) {
    const float* row = m.row(r);
    for (int64_t c = 0; c < m.cols; ++c)
      if (!std::isfinite(row[c]))
        fail(where, ": ", what, " row ", r, " has a non-finite value (", row[c], " at column ",
             c, ")");
  }
}

std::vector<int64_t> class_list(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key)) fail(source, ": missing key '", key, "' (an array of class ids)");
  const json& a = j.at(key);
  if (!a.is_array())
    fail(source, ": key '", key, "' must be an array of integer class ids, got ",
         detail::describe_json(a));
  std::vector<int64_t> out;
  for (size_t i = 0; i < a.size(); ++i) {
    const json& v = a[i];
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      out.push_back(v.get<int64_t>());
    } else if (v.is_number_unsigned() &&
               v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) {
      out.push_back(static_cast<int64_t>(v.get<uint64_t>()));
    } else {
      fail(source, ": key '", key, "[", i, "]' must be an integer class id (int64), got ",
           detail::describe_json(v));
    }
  }
  return out;
}

}  // namespace

void validate_dataset(const Dataset& d, const std::string& where) {
  check_matrix(d.image_features, d.image_labels, "image_features", "image_labels", where);
  check_matrix(d.text_features, d.text_labels, "text_features", "text_labels", where);
  if (d.train_classes.empty()) fail(where, ": train_classes is empty");
  if (d.test_classes.empty()) fail(where, ": test_classes is empty");

  std::unordered_map<int64_t, int> split;  // class -> 0 train, 1 test
  const char* split_name[2] = {"train_classes", "test_classes"};
  for (int s = 0; s < 2; ++s) {
    for (int64_t c : s == 0 ? d.train_classes : d.test_classes) {
      auto it = split.find(c);
      if (it != split.end()) {
        if (it->second == s) fail(where, ": class ", c, " is listed twice in ", split_name[s]);
        fail(where, ": class ", c, " is in both train_classes and test_classes");
      }
      split.emplace(c, s);
    }
  }

  std::unordered_map<int64_t, int64_t> images, texts;
  for (size_t i = 0; i < d.image_labels.size(); ++i) {
    const int64_t c = d.image_labels[i];
    if (!split.count(c))
      fail(where, ": image ", i, " has class ", c,
           ", which is in neither train_classes nor test_classes");
    ++images[c];
  }
  for (size_t i = 0; i < d.text_labels.size(); ++i) {
    const int64_t c = d.text_labels[i];
    if (!split.count(c))
      fail(where, ": text ", i, " has class ", c,
           ", which is in neither train_classes nor test_classes");
    ++texts[c];
  }
  for (int s = 0; s < 2; ++s) {
    for (int64_t c : s == 0 ? d.train_classes : d.test_classes) {
      if (!images.count(c)) fail(where, ": class ", c, " (", split_name[s], ") has no images");
      if (!texts.count(c)) fail(where, ": class ", c, " (", split_name[s], ") has no texts");
    }
  }
}

std::string DatasetIdentity::describe() const {
  return std::to_string(images) + " images x " + std::to_string(image_dim) + ", " +
         std::to_string(texts) + " texts x " + std::to_string(text_dim) + ", " +
         std::to_string(seen_classes) + " seen and " + std::to_string(unseen_classes) +
         " unseen classes";
}

DatasetIdentity dataset_identity(const Dataset& d) {
  ContentHash h;
  auto add_matrix = [&](const HostMatrix& m) {
    h.add(static_cast<uint64_t>(m.rows));
    h.add(static_cast<uint64_t>(m.cols));
    h.add_bytes(m.data.data(), m.data.size() * sizeof(float));
  };
  auto add_ids = [&](const std::vector<int64_t>& ids) {
    h.add_bytes(ids.data(), ids.size() * sizeof(int64_t));
  };
  add_matrix(d.image_features);
  add_ids(d.image_labels);
  add_matrix(d.text_features);
  add_ids(d.text_labels);
  add_ids(d.train_classes);
  add_ids(d.test_classes);
  DatasetIdentity id;
  id.images = d.image_features.rows;
  id.image_dim = d.image_features.cols;
  id.texts = d.text_features.rows;
  id.text_dim = d.text_features.cols;
  id.seen_classes = static_cast<int64_t>(d.train_classes.size());
  id.unseen_classes = static_cast<int64_t>(d.test_classes.size());
  id.content_hash = h.hex();
  return id;
}

Dataset load_dataset_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail_file(dir, ": dataset folder not found");
  if (!fs::is_directory(dir, ec)) fail_file(dir, ": not a folder (expected a dataset folder)");
  const std::string meta_path = join(dir, kMetaFile);
  if (!fs::exists(meta_path, ec)) fail_file(meta_path, ": not found (every dataset folder has one)");

  const json meta = detail::parse_json_strict(read_text_file(meta_path), meta_path);
  if (!meta.is_object())
    fail(meta_path, ": expected a JSON object, got ", detail::describe_json(meta));
  const std::vector<std::string> known = {"name", "train_classes", "test_classes"};
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      const std::string near = detail::closest_key(it.key(), known);
      fail(meta_path, ": unknown key ", in_quotes(it.key()),
           near.empty() ? std::string() : " (did you mean '" + near + "'?)");
    }
  }

  Dataset d;
  if (meta.contains("name")) {
    if (!detail::json_to_bytes(meta.at("name"), &d.name))
      fail(meta_path, ": key 'name' must be a string (or {\"bytes_hex\": ...}), got ",
           detail::describe_json(meta["name"]));
  } else {
    d.name = fs::path(dir).lexically_normal().filename().string();
    if (d.name.empty()) d.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  }
  d.train_classes = class_list(meta, "train_classes", meta_path);
  d.test_classes = class_list(meta, "test_classes", meta_path);

  for (const char* f : {kImageFeatures, kImageLabels, kTextFeatures, kTextLabels})
    if (!fs::exists(join(dir, f), ec)) fail(join(dir, f), ": not found");
  d.image_features = read_npy_matrix(join(dir, kImageFeatures));
  d.image_labels = read_npy_labels(join(dir, kImageLabels));
  d.text_features = read_npy_matrix(join(dir, kTextFeatures));
  d.text_labels = read_npy_labels(join(dir, kTextLabels));
  validate_dataset(d, dir);
  return d;
}

void write_dataset_folder(const Dataset& d, const std::string& dir) {
  validate_dataset(d, dir);
  fs::path target = fs::path(dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "a/b/" names "a/b"
  if (target.filename().empty() || target.filename() == "." || target.filename() == "..")
    fail(dir, ": not a valid folder name for a dataset");
  std::error_code ec;
  // dataset.json's text first: nothing is created unless every part can be written.
  nlohmann::ordered_json meta;
  meta["name"] = detail::bytes_to_json<nlohmann::ordered_json>(d.name);
  meta["train_classes"] = d.train_classes;
  meta["test_classes"] = d.test_classes;
  const std::string text = meta.dump(2) + "\n";

  // Refuse to replace anything that is not a dataset folder written by us.
  check_folder_replaceable(target, dir, [](const std::string& name) -> std::string {
    if (dataset_file_names().count(name)) return "";
    return "holds " + in_quotes(name) + ", which is not part of a dataset folder";
  });

  // The parent folders this call creates, removed again if the write fails.
  CreatedParents parents(target, dir);
  fs::path tmp;
  try {
    tmp = create_folder_beside(target, dir);
  } catch (...) {
    parents.remove_if_empty();
    throw;
  }

  auto remove_quietly = [](const fs::path& p) {
    std::error_code ignored;
    fs::remove_all(p, ignored);
  };
  try {
    write_npy_matrix(join(tmp.string(), kImageFeatures), d.image_features);
    write_npy_labels(join(tmp.string(), kImageLabels), d.image_labels);
    write_npy_matrix(join(tmp.string(), kTextFeatures), d.text_features);
    write_npy_labels(join(tmp.string(), kTextLabels), d.text_labels);
    write_file_atomically(join(tmp.string(), kMetaFile),
                                  [&](std::ostream& out) { out << text; });

    move_folder_into_place(tmp, target, dir);
  } catch (...) {
    remove_quietly(tmp);
    parents.remove_if_empty();
    throw;
  }
}

}  // namespace zscrgan
