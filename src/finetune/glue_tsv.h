// GLUE tasks in their own TSV layout, for users who have the files (they are not reachable here).
// A task is named "glue:NAME:DIR"; DIR holds GLUE's train.tsv and its dev file:
//   sst2  train.tsv, dev.tsv          header "sentence<TAB>label", labels 0/1
//   cola  train.tsv, dev.tsv          no header, 4 columns: source, label, mark, sentence
//   mrpc  train.tsv, dev.tsv          header; "#1 String", "#2 String", label "Quality" (0/1)
//   qqp   train.tsv, dev.tsv          header; question1, question2, label is_duplicate (0/1)
//   mnli  train.tsv, dev_matched.tsv  header; sentence1, sentence2, gold_label
//                                     (contradiction/entailment/neutral)
//   rte   train.tsv, dev.tsv          header; sentence1, sentence2, label
//                                     (entailment/not_entailment)
// GLUE's test files carry no labels, so its dev file is our test split (reported as such:
// TaskData::sources), and our dev split is `dev_fraction` (default 10%) of train.tsv, at most 2000
// rows (docs/finetune.md). Every row of a file with a header
// must have the header's column count. Fields are taken as is (no quoting, as GLUE's own readers).
// A wrong column count, an unknown label or an empty file is an error naming file and line; header
// problems (a BOM, a missing column, a comma-separated file) are tsv_table.h's errors.
#pragma once
#include <string>
#include <vector>

#include "finetune/task_data.h"

namespace ecmoe::finetune {

struct GlueLayout {
  std::string name;      // "sst2", ...
  std::string dev_file;  // GLUE's dev file (our test split)
  bool header = true;
  int columns = 0;  // headerless layouts only: columns per row
  // Columns: by header name, or as a decimal index for headerless layouts. text_b empty: single.
  std::string text_a, text_b, label;
  std::vector<std::string> labels;
};

const std::vector<GlueLayout>& glue_layouts();
const GlueLayout& glue_layout(const std::string& name);  // throws, listing the known names

// The labelled rows of one TSV file in `layout`.
std::vector<Example> read_glue_tsv(const std::string& path, const GlueLayout& layout);

// The whole task from GLUE's folder, split as described above.
TaskData load_glue_task(const std::string& layout_name, const std::string& dir,
                        double dev_fraction = 0.1);

}  // namespace ecmoe::finetune
