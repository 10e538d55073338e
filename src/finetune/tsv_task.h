// Your own classification task from tab-separated files with a header line (tsv_table.h):
//   --task tsv:DIR                      DIR/train.tsv, and DIR/dev.tsv, DIR/test.tsv when present
//   --train FILE [--dev FILE] [--test FILE]
// Columns by header name: the text (default "text"), optionally a second text of a pair (none by
// default), and the label (default "label"). Labels are any strings: the set is the training
// file's, sorted (bytewise), and a dev or test label the training file does not have is an error
// naming file, line and label. Without a dev file, dev_fraction of the training rows (a fixed
// pseudo-random choice, independent of the fine-tuning seed) is held out as dev; without a test
// file there is no test split and the run reports dev only (its figures are then optimistic: dev
// also chose the kept parameters). The training rows are put in a fixed pseudo-random order (so
// max_train_examples takes a fair sample even of a file sorted by label); dev and test keep their
// files' order. Rows whose text (or pair text) is empty or only white space are
// skipped and counted in TaskData::warnings; a row with another column count than the header, or
// an empty label, is an error naming file and line.
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "finetune/task_data.h"

namespace ecmoe::finetune {

struct TsvColumns {
  std::string text = "text";
  std::string text_pair;  // empty: single texts
  std::string label = "label";
};

struct TsvTaskFiles {
  std::string train, dev, test;  // dev and test may be empty
};

// The rows of one file: texts and (when `labels` is true) label strings, each with its line.
struct TsvRows {
  std::vector<std::string> text_a, text_b, labels;
  std::vector<int64_t> lines;
  bool has_labels = false;  // the label column was read
  int64_t empty_texts = 0;  // rows with an empty text (skipped when skip_empty, else kept)
};

struct TsvReadOptions {
  bool labels = true;              // read the label column (an error when it is missing)
  bool labels_if_present = false;  // read it only when the header has it
  bool skip_empty = true;          // drop rows with an empty text, counting them
  std::string hint;  // ends a missing-column error, e.g. "choose one with --text-column"
};

TsvRows read_tsv_rows(std::istream& in, const std::string& path, const TsvColumns& columns,
                      const TsvReadOptions& options);
TsvRows read_tsv_rows(const std::string& path, const TsvColumns& columns,
                      const TsvReadOptions& options);

// "tsv:DIR" -> DIR/train.tsv and whichever of DIR/dev.tsv, DIR/test.tsv exist.
TsvTaskFiles tsv_task_files(const std::string& dir);

TaskData load_tsv_task(const std::string& name, const TsvTaskFiles& files,
                       const TsvColumns& columns, double dev_fraction);

}  // namespace ecmoe::finetune
