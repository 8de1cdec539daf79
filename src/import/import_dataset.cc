// import_dataset (dispatch to the format readers), import_summary and run_import.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "import_formats.h"
#include "core/error.h"
#include "import/importers.h"

namespace zscrgan {

namespace fs = std::filesystem;

namespace detail {

std::string default_dataset_name(const std::string& path) {
  const fs::path p = fs::path(path).lexically_normal();
  std::string name = p.filename().string();
  if (name.empty() || name == ".") name = p.parent_path().filename().string();
  return name.empty() ? "dataset" : name;
}

}  // namespace detail

Dataset import_dataset(const ImportOptions& o) {
  static const char* kFormats = "xlsa17, gazsl or interchange";
  if (o.format.empty()) fail("import: no format given (", kFormats, ")");
  if (o.format != "xlsa17" && o.format != "gazsl" && o.format != "interchange")
    fail("import: unknown format '", o.format, "' (expected ", kFormats, ")");
  if (o.input.empty()) fail("import: no input folder given");
  std::error_code ec;
  if (!fs::exists(o.input, ec)) fail_file(o.input, ": input folder not found");
  if (!fs::is_directory(o.input, ec)) fail(o.input, ": not a folder (expected the ", o.format,
                                           " files in a folder)");
  if (o.format != "xlsa17" && !o.class_embedding.empty())
    fail("import: --class-embedding applies to the xlsa17 format only, not ", o.format);
  if (o.format != "xlsa17" && o.original_att)
    fail("import: --original-att applies to the xlsa17 format only, not ", o.format);
  if (o.format != "gazsl" && !o.split.empty())
    fail("import: --split applies to the gazsl format only, not ", o.format,
         o.format == "xlsa17" ? " (xlsa17 has one split, its proposed one)" : "");

  Dataset d;
  if (o.format == "xlsa17") {
    d = detail::import_xlsa17(o);
  } else if (o.format == "gazsl") {
    d = detail::import_gazsl(o);
  } else {
    d = load_dataset_folder(o.input);  // validates; used for Wiki and for converted pickles
    if (!o.name.empty()) d.name = o.name;
    return d;
  }
  if (d.name.empty())
    d.name = detail::default_dataset_name(o.output.empty() ? o.input : o.output);
  validate_dataset(d, o.input);
  return d;
}

namespace {

struct Range {
  int64_t non_finite = 0;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  double sum = 0;
  int64_t n = 0;
};

Range value_range(const HostMatrix& m) {
  Range r;
  const size_t n = std::min(m.data.size(), static_cast<size_t>(std::max<int64_t>(0, m.rows) *
                                                               std::max<int64_t>(0, m.cols)));
  for (size_t i = 0; i < n; ++i) {
    const float v = m.data[i];
    if (!std::isfinite(v)) {
      ++r.non_finite;
      continue;
    }
    r.lo = std::min(r.lo, static_cast<double>(v));
    r.hi = std::max(r.hi, static_cast<double>(v));
    r.sum += v;
    ++r.n;
  }
  return r;
}

// Rows equal, bit for bit, to an earlier row: how many, and the first such pair.
struct Duplicates {
  int64_t count = 0;
  int64_t first_row = -1;
  int64_t first_of = -1;
};

Duplicates duplicate_rows(const HostMatrix& m) {
  Duplicates d;
  if (m.cols <= 0 || static_cast<int64_t>(m.data.size()) < m.rows * m.cols) return d;
  const size_t bytes = static_cast<size_t>(m.cols) * sizeof(float);
  std::unordered_map<uint64_t, std::vector<int64_t>> by_hash;
  by_hash.reserve(static_cast<size_t>(m.rows));
  for (int64_t r = 0; r < m.rows; ++r) {
    const auto* p = reinterpret_cast<const unsigned char*>(m.row(r));
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
    auto& same = by_hash[h];
    bool dup = false;
    for (int64_t earlier : same) {
      if (std::memcmp(m.row(earlier), m.row(r), bytes) == 0) {
        dup = true;
        if (d.count == 0) {
          d.first_row = r;
          d.first_of = earlier;
        }
        break;
      }
    }
    if (dup) ++d.count;
    else same.push_back(r);
  }
  return d;
}

std::string list_some(const std::vector<int64_t>& ids, size_t max_shown = 8) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size() && i < max_shown; ++i) os << (i ? ", " : "") << ids[i];
  if (ids.size() > max_shown) os << ", ... (" << ids.size() << " in all)";
  return os.str();
}

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

}  // namespace

std::string import_summary(const Dataset& d) {
  std::ostringstream os;
  std::vector<std::string> odd;

  std::set<int64_t> train(d.train_classes.begin(), d.train_classes.end());
  std::set<int64_t> test(d.test_classes.begin(), d.test_classes.end());
  if (train.size() != d.train_classes.size()) odd.push_back("train_classes lists a class twice");
  if (test.size() != d.test_classes.size()) odd.push_back("test_classes lists a class twice");
  std::vector<int64_t> both;
  for (int64_t c : test)
    if (train.count(c)) both.push_back(c);
  if (!both.empty()) odd.push_back("classes in both splits: " + list_some(both));

  // Per split counts; a label in neither split is counted apart.
  struct Counts {
    int64_t train = 0, test = 0, neither = 0;
    std::map<int64_t, int64_t> per_class;
  };
  auto count = [&](const std::vector<int64_t>& labels) {
    Counts c;
    for (int64_t l : labels) {
      ++c.per_class[l];
      if (train.count(l)) ++c.train;
      else if (test.count(l)) ++c.test;
      else ++c.neither;
    }
    return c;
  };
  const Counts images = count(d.image_labels);
  const Counts texts = count(d.text_labels);
  for (const auto* kind : {"image", "text"}) {
    const Counts& c = std::strcmp(kind, "image") == 0 ? images : texts;
    if (c.neither > 0) {
      std::vector<int64_t> classes;
      for (const auto& [cls, n] : c.per_class)
        if (!train.count(cls) && !test.count(cls)) classes.push_back(cls);
      odd.push_back(std::to_string(c.neither) + " " + kind +
                    " labels in neither split (classes " + list_some(classes) + ")");
    }
  }
  std::vector<int64_t> no_images, no_texts;
  for (const auto* split : {&d.train_classes, &d.test_classes}) {
    for (int64_t c : *split) {
      if (!images.per_class.count(c)) no_images.push_back(c);
      if (!texts.per_class.count(c)) no_texts.push_back(c);
    }
  }
  if (!no_images.empty()) odd.push_back("classes with no images: " + list_some(no_images));
  if (!no_texts.empty()) odd.push_back("classes with no texts: " + list_some(no_texts));

  auto texts_per_class = [&](const std::set<int64_t>& split) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (int64_t c : split) {
      auto it = texts.per_class.find(c);
      const int64_t n = it == texts.per_class.end() ? 0 : it->second;
      lo = std::min(lo, n);
      hi = std::max(hi, n);
    }
    if (split.empty()) return std::string("-");
    return lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi);
  };

  auto describe = [&](const char* kind, const char* one, const HostMatrix& m, const Counts& c) {
    const Range r = value_range(m);
    os << "  " << kind << ": " << m.rows << " (train " << c.train << ", test " << c.test;
    if (c.neither) os << ", neither " << c.neither;
    os << "), " << m.cols << "-d";
    if (r.n > 0)
      os << ", values in [" << fmt(r.lo) << ", " << fmt(r.hi) << "], mean " << fmt(r.sum / r.n);
    os << "\n";
    if (r.non_finite > 0)
      odd.push_back(std::to_string(r.non_finite) + " non-finite " + one + " feature values");
    const Duplicates dup = duplicate_rows(m);
    if (dup.count > 0)
      odd.push_back(std::to_string(dup.count) + " " + one +
                    " rows repeat an earlier row (first: row " + std::to_string(dup.first_row) +
                    " = row " + std::to_string(dup.first_of) + ")");
  };

  os << "dataset '" << d.name << "'\n";
  os << "  classes: " << d.train_classes.size() << " train, " << d.test_classes.size()
     << " test\n";
  describe("images", "image", d.image_features, images);
  describe("texts", "text", d.text_features, texts);
  os << "  texts per class: train " << texts_per_class(train) << ", test "
     << texts_per_class(test) << "\n";
  if (odd.empty()) {
    os << "  odd: nothing\n";
  } else {
    for (const auto& line : odd) os << "  odd: " << line << "\n";
  }
  return os.str();
}

void run_import(const ImportOptions& o, std::ostream& out) {
  if (o.output.empty()) fail("import: no output folder given");
  const Dataset d = import_dataset(o);  // validated: import_dataset returns only valid datasets
  write_dataset_folder(d, o.output);
  out << import_summary(d) << "wrote " << o.output << "\n";
}

}  // namespace zscrgan
