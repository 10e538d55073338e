#include "finetune/glue_tsv.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <utility>

#include "core/error.h"
#include "data/clean.h"
#include "io/input_file.h"

namespace ecmoe::finetune {

namespace {

constexpr double kDevFraction = 0.1;
constexpr int64_t kDevCap = 2000;
constexpr uint64_t kSplitSeed = 0x676c7565;  // "glue"

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? tab : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return fields;
}

// The column of `name` in a header, or its index for a headerless layout.
int resolve_column(const std::string& name, const std::vector<std::string>& header,
                   const GlueLayout& layout, const std::string& path) {
  if (!layout.header) return std::stoi(name);
  const auto it = std::find(header.begin(), header.end(), name);
  ECMOE_CHECK(it != header.end(), path, ":1: the header has no column '", name, "' (GLUE ",
              layout.name, " layout)");
  return int(it - header.begin());
}

// Rejects a line that is not UTF-8, as `ecmoe prepare` rejects such input
// (data::find_invalid_utf8).
void check_utf8(const std::string& line, const std::string& path, int64_t line_no) {
  const auto bad = data::find_invalid_utf8(line);
  ECMOE_CHECK(!bad, path, ":", line_no, ": not UTF-8 text (invalid byte at column ",
              bad.value_or(0) + 1, ")");
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
  std::vector<std::string> header;
  size_t columns = size_t(layout.columns);
  if (layout.header) {
    ECMOE_CHECK(std::getline(in, line), path, ": empty file, expected a header line");
    ++line_no;
    check_utf8(line, path, line_no);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    header = split_tabs(line);
    columns = header.size();
  }
  const int a = resolve_column(layout.text_a, header, layout, path);
  const int b = layout.text_b.empty() ? -1 : resolve_column(layout.text_b, header, layout, path);
  const int label = resolve_column(layout.label, header, layout, path);
  std::vector<Example> examples;
  while (std::getline(in, line)) {
    ++line_no;
    check_utf8(line, path, line_no);
    if (!line.empty() && line.back() == '\r') line.pop_back();
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

TaskData load_glue_task(const std::string& layout_name, const std::string& dir) {
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
  const SplitSizes sizes = fraction_split(n, kDevFraction, kDevCap, 0, kSplitSeed);
  split_examples(std::move(train), {0, sizes.dev_count, 0, kSplitSeed}, task);
  task.test = std::move(test);
  task.description = "GLUE " + layout.name + " from " + dir + ": train.tsv split into train/dev, " +
                     layout.dev_file + " as test";
  check_task(task);
  return task;
}

}  // namespace ecmoe::finetune
