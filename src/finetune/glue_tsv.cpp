#include "finetune/glue_tsv.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "core/error.h"
#include "finetune/tsv_table.h"
#include "io/input_file.h"

namespace ecmoe::finetune {

namespace {

constexpr int64_t kDevCap = 2000;
constexpr uint64_t kSplitSeed = 0x676c7565;  // "glue"

std::string format_fraction(double x) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", x);
  return text;
}

std::string layout_columns(const GlueLayout& layout) {
  std::string text = "'" + layout.text_a + "'";
  if (!layout.text_b.empty()) text += ", '" + layout.text_b + "'";
  return text + " and '" + layout.label + "'";
}

// The column of `name` in a header, or its index for a headerless layout.
int resolve_column(const std::string& name, const TsvHeader& header, const GlueLayout& layout) {
  if (!layout.header) return std::stoi(name);
  return tsv_column(header, name,
                    "the GLUE " + layout.name + " layout needs " + layout_columns(layout));
}

}  // namespace

const std::vector<GlueLayout>& glue_layouts() {
  static const std::vector<GlueLayout> layouts = {
      {"sst2", "dev.tsv", true, 0, "sentence", "", "label", {"0", "1"}},
      {"cola", "dev.tsv", false, 4, "3", "", "1", {"0", "1"}},
      {"mrpc", "dev.tsv", true, 0, "#1 String", "#2 String", "Quality", {"0", "1"}},
      {"qqp", "dev.tsv", true, 0, "question1", "question2", "is_duplicate", {"0", "1"}},
      {"mnli",
       "dev_matched.tsv",
       true,
       0,
       "sentence1",
       "sentence2",
       "gold_label",
       {"contradiction", "entailment", "neutral"}},
      {"rte",
       "dev.tsv",
       true,
       0,
       "sentence1",
       "sentence2",
       "label",
       {"entailment", "not_entailment"}},
  };
  return layouts;
}

const GlueLayout& glue_layout(const std::string& name) {
  std::string known;
  for (const GlueLayout& l : glue_layouts()) {
    if (l.name == name) return l;
    known += (known.empty() ? "" : ", ") + l.name;
  }
  fail("unknown GLUE task '", name, "' (known: ", known, ")");
}

std::vector<Example> read_glue_tsv(const std::string& path, const GlueLayout& layout) {
  require_regular_file(path, "GLUE " + layout.name + " file");
  std::ifstream in(path, std::ios::binary);
  ECMOE_CHECK(in.good(), "cannot read ", path, " (GLUE ", layout.name, ")");
  std::string line;
  int64_t line_no = 0;
  TsvHeader header{path, {}};
  size_t columns = size_t(layout.columns);
  if (layout.header) {
    header = read_tsv_header(in, path);
    ++line_no;
    columns = header.columns.size();
  }
  const int a = resolve_column(layout.text_a, header, layout);
  const int b = layout.text_b.empty() ? -1 : resolve_column(layout.text_b, header, layout);
  const int label = resolve_column(layout.label, header, layout);
  std::vector<Example> examples;
  while (read_tsv_line(in, line, line_no, path)) {
    if (line.empty()) continue;
    const std::vector<std::string> f = split_tabs(line);
    ECMOE_CHECK(f.size() == columns, path, ":", line_no, ": ", f.size(), " columns, expected ",
                columns, " (GLUE ", layout.name, " layout)");
    const auto it = std::find(layout.labels.begin(), layout.labels.end(), f[label]);
    if (it == layout.labels.end()) {
      std::string known;
      for (const auto& l : layout.labels) known += (known.empty() ? "" : ", ") + l;
      fail(path, ":", line_no, ": unknown label '", f[label], "' (expected one of ", known, ")");
    }
    examples.push_back({f[a], b >= 0 ? f[b] : std::string(), int(it - layout.labels.begin())});
  }
  ECMOE_CHECK(!examples.empty(), path, ": no labelled rows (GLUE ", layout.name, ")");
  return examples;
}

TaskData load_glue_task(const std::string& layout_name, const std::string& dir,
                        double dev_fraction) {
  const GlueLayout& layout = glue_layout(layout_name);
  ECMOE_CHECK(std::filesystem::is_directory(dir), "GLUE folder ", dir, " does not exist");
  TaskData task;
  task.name = "glue:" + layout.name;
  task.labels = layout.labels;
  task.pairs = !layout.text_b.empty();
  std::vector<Example> train = read_glue_tsv(dir + "/train.tsv", layout);
  std::vector<Example> test = read_glue_tsv(dir + "/" + layout.dev_file, layout);
  const int64_t n = int64_t(train.size());
  // Our dev split comes out of train.tsv; the test split is GLUE's dev file.
  ECMOE_CHECK(dev_fraction > 0 && dev_fraction < 1, "GLUE ", layout.name,
              ": dev_fraction must be in (0, 1), got ", dev_fraction);
  const SplitSizes sizes = fraction_split(n, dev_fraction, kDevCap, 0, kSplitSeed);
  const int64_t dev_count = std::max<int64_t>(1, sizes.dev_count);
  split_examples(std::move(train), {0, dev_count, 0, kSplitSeed}, task);
  task.test = std::move(test);
  task.description = "GLUE " + layout.name + " from " + dir + ": train.tsv split into train/dev, " +
                     layout.dev_file + " (GLUE's dev file) as test";
  task.sources = {"train.tsv less the dev rows",
                  std::to_string(dev_count) + " rows held out of train.tsv (dev_fraction " +
                      format_fraction(dev_fraction) + ", at most " + std::to_string(kDevCap) + ")",
                  layout.dev_file + " (GLUE's labelled dev file; GLUE's test has no labels)"};
  check_task(task);
  return task;
}

}  // namespace ecmoe::finetune
