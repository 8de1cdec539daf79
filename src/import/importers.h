// Importers: the formats the paper's datasets are published in, read into a Dataset and written
// as an interchange folder (datasets/README.md). The layouts each importer expects are described
// in datasets/FORMATS.md. The authors' pickle folders are converted by tools/convert_pickles.py
// instead: nothing here unpickles.
#ifndef ZSCRGAN_IMPORTERS_H
#define ZSCRGAN_IMPORTERS_H

#include <ostream>
#include <string>

#include "data/dataset.h"

namespace zscrgan {

struct ImportOptions {
  std::string format;           // "xlsa17" | "gazsl" | "interchange"
  std::string input;            // the folder holding the published files
  std::string output;           // the dataset folder to write (run_import only)
  std::string class_embedding;  // xlsa17 only: optional .npy, one row per class (C x D)
  bool original_att = false;    // xlsa17 only: use 'original_att' instead of 'att'
  std::string split;            // gazsl only: "easy" (SCS, the default) or "hard" (SCE)
  // The dataset's name; default: the output folder's name (the input's when output is empty);
  // interchange: the name in the input's dataset.json (else the input folder's name).
  std::string name;
};

// Reads the input folder in the given format. Every failure is one line naming the file and,
// for .mat files, the variable. The result passes validate_dataset.
Dataset import_dataset(const ImportOptions& options);

// A few lines for people: classes, images and texts per split, dimensions, value ranges, and
// anything odd (empty classes, duplicate rows, non-finite values, a class in both splits, labels
// in neither split). Never throws on a malformed dataset; it describes it.
std::string import_summary(const Dataset& d);

// import_dataset (which validates) + write_dataset_folder(options.output) + the summary on
// `out`. Nothing is written when anything fails.
void run_import(const ImportOptions& options, std::ostream& out);

}  // namespace zscrgan

#endif  // ZSCRGAN_IMPORTERS_H
