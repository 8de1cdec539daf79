// xlsa17 ("Zero-Shot Learning - The Good, the Bad and the Ugly", proposed splits), read through
// matio: res101.mat (features D x N, one column per image; labels N x 1, 1-based class numbers)
// and att_splits.mat (att D_att x C, one column per class; 1-based image indices per split).
//
// Zero-shot retrieval trains on the classes of the trainval_loc images and queries the classes of
// the test_unseen_loc images. train_loc / val_loc are never read: some copies lack them, and
// train_loc is not always a subset of trainval_loc. test_seen_loc images (seen-class images held
// out for generalized zero-shot classification) are not imported.
#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_set>

#include "import_formats.h"
#include "import_mat.h"
#include "core/error.h"
#include "formats/npy.h"

namespace zscrgan {
namespace detail {

namespace fs = std::filesystem;

namespace {

// Reads a 1-based image index list, checks it against the N images and returns it 0-based.
std::vector<int64_t> read_image_locations(const MatFile& file, const char* name, int64_t n_images,
                                          const std::string& features_file) {
  const std::vector<int64_t> loc = file.read(name).integer_vector();
  if (loc.empty()) fail(file.path(), ": variable '", name, "' is empty");
  std::vector<int64_t> out(loc.size());
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < loc.size(); ++i) {
    if (loc[i] < 1 || loc[i] > n_images)
      fail(file.path(), ": variable '", name, "' entry ", i + 1, " is ", loc[i], ", outside 1..",
           n_images, " (1-based columns of 'features' in ", features_file, ")");
    if (!seen.insert(loc[i]).second)
      fail(file.path(), ": variable '", name, "' lists image ", loc[i], " twice");
    out[i] = loc[i] - 1;
  }
  return out;
}

}  // namespace

Dataset import_xlsa17(const ImportOptions& o) {
  const std::string res_path = (fs::path(o.input) / "res101.mat").string();
  const std::string att_path = (fs::path(o.input) / "att_splits.mat").string();
  if (o.original_att && !o.class_embedding.empty())
    fail("xlsa17: --original-att and --class-embedding both choose the class texts; give one");

  // The small file first, so that its mistakes are reported before the large read.
  const MatFile att_file(att_path);
  const char* att_name = o.original_att ? "original_att" : "att";
  const MatMatrix att = att_file.read(att_name);
  const int64_t n_classes = att.cols();
  if (att.rows() == 0 || n_classes == 0)
    fail(att_path, ": variable '", att_name, "' is ", att.shape(),
         "; expected D x C, one column per class");

  const MatFile res_file(res_path);
  std::vector<int64_t> labels = res_file.read("labels").integer_vector();
  const int64_t n_images = static_cast<int64_t>(labels.size());
  if (n_images == 0) fail(res_path, ": variable 'labels' is empty");
  for (int64_t i = 0; i < n_images; ++i) {
    if (labels[i] < 1 || labels[i] > n_classes)
      fail(res_path, ": variable 'labels' entry ", i + 1, " is ", labels[i],
           ", which matches no class: classes are 1..", n_classes, " (the columns of '", att_name,
           "' in ", att_path, ", ", att.shape(), ")");
    labels[i] -= 1;  // class ids are 0-based columns of att
  }

  const std::vector<int64_t> trainval =
      read_image_locations(att_file, "trainval_loc", n_images, res_path);
  const std::vector<int64_t> test_unseen =
      read_image_locations(att_file, "test_unseen_loc", n_images, res_path);
  {
    const std::unordered_set<int64_t> train_images(trainval.begin(), trainval.end());
    for (int64_t i : test_unseen)
      if (train_images.count(i))
        fail(att_path, ": image ", i + 1, " is in both 'trainval_loc' and 'test_unseen_loc'");
  }

  std::set<int64_t> train_set, test_set;
  for (int64_t i : trainval) train_set.insert(labels[i]);
  for (int64_t i : test_unseen) test_set.insert(labels[i]);
  for (int64_t c : test_set)
    if (train_set.count(c))
      fail(att_path, ": class ", c + 1, " (1-based, from 'labels' in ", res_path,
           ") has images in both 'trainval_loc' and 'test_unseen_loc'; a zero-shot split keeps "
           "them apart");

  // Texts: one per class, the class's att column, or its row of the supplied embedding file.
  HostMatrix class_texts;
  if (!o.class_embedding.empty()) {
    class_texts = read_npy_matrix(o.class_embedding);
    if (class_texts.rows != n_classes)
      fail(o.class_embedding, ": has ", class_texts.rows, " rows but '", att_name, "' in ",
           att_path, " has ", n_classes, " classes (columns); expected one row per class, in "
           "the order of 'allclasses_names'");
  } else {
    std::vector<int64_t> all(static_cast<size_t>(n_classes));
    for (int64_t c = 0; c < n_classes; ++c) all[c] = c;
    class_texts = att.columns_as_rows(all);
  }

  // The large read last. features is D x N, one column per image: columns are our rows.
  const MatMatrix features = res_file.read("features");
  if (features.cols() != n_images) {
    if (features.rows() == n_images)
      fail(res_path, ": variable 'features' is ", features.shape(),
           ", one row per image; expected D x ", n_images,
           " (one column per image, as xlsa17 stores it)");
    fail(res_path, ": variable 'features' is ", features.shape(), " but 'labels' has ", n_images,
         " entries; expected D x ", n_images, " (one column per image)");
  }
  if (features.rows() == 0) fail(res_path, ": variable 'features' is ", features.shape());

  Dataset d;
  d.name = o.name;
  std::vector<int64_t> columns;
  columns.reserve(trainval.size() + test_unseen.size());
  columns.insert(columns.end(), trainval.begin(), trainval.end());
  columns.insert(columns.end(), test_unseen.begin(), test_unseen.end());
  d.image_features = features.columns_as_rows(columns);
  d.image_labels.reserve(columns.size());
  for (int64_t i : columns) d.image_labels.push_back(labels[i]);

  d.train_classes.assign(train_set.begin(), train_set.end());
  d.test_classes.assign(test_set.begin(), test_set.end());
  std::vector<int64_t> text_rows = d.train_classes;
  text_rows.insert(text_rows.end(), d.test_classes.begin(), d.test_classes.end());
  d.text_features.cols = class_texts.cols;
  d.text_features.rows = static_cast<int64_t>(text_rows.size());
  d.text_features.data.reserve(text_rows.size() * static_cast<size_t>(class_texts.cols));
  for (int64_t c : text_rows) {
    d.text_features.data.insert(d.text_features.data.end(), class_texts.row(c),
                                class_texts.row(c) + class_texts.cols);
    d.text_labels.push_back(c);
  }
  return d;
}

}  // namespace detail
}  // namespace zscrgan
