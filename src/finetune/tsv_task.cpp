#include "finetune/tsv_task.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "core/error.h"
#include "finetune/tsv_table.h"
#include "io/input_file.h"

namespace fs = std::filesystem;

namespace ecmoe::finetune {

namespace {

constexpr uint64_t kDevSplitSeed = 0x747376;  // "tsv": the carved dev split never moves with seed

bool blank(const std::string& text) {
  return text.find_first_not_of(" \t\r\n\f\v") == std::string::npos;
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& s : items) text += (text.empty() ? "" : ", ") + s;
  return text;
}

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

// Examples of a file's rows, label strings mapped to indices of `labels`.
std::vector<Example> to_examples(const TsvRows& rows, const std::vector<std::string>& labels,
                                 const std::string& path, const std::string& train_path) {
  std::vector<Example> examples;
  examples.reserve(rows.text_a.size());
  for (size_t i = 0; i < rows.text_a.size(); ++i) {
    const auto it = std::lower_bound(labels.begin(), labels.end(), rows.labels[i]);
    ECMOE_CHECK(it != labels.end() && *it == rows.labels[i], path, ":", rows.lines[i], ": label '",
                rows.labels[i], "' does not occur in ", train_path, " (its labels: ", join(labels),
                ")");
    examples.push_back({rows.text_a[i], rows.text_b[i], int(it - labels.begin())});
  }
  return examples;
}

void note_empty(const TsvRows& rows, const std::string& path, TaskData& task) {
  if (rows.empty_texts > 0)
    task.warnings.push_back(path + ": " + std::to_string(rows.empty_texts) + " row" +
                            (rows.empty_texts == 1 ? "" : "s") + " with an empty text skipped");
}

}  // namespace

TsvRows read_tsv_rows(std::istream& in, const std::string& path, const TsvColumns& columns,
                      const TsvReadOptions& options) {
  const TsvHeader header = read_tsv_header(in, path);
  const int a = tsv_column(header, columns.text, options.hint);
  const int b =
      columns.text_pair.empty() ? -1 : tsv_column(header, columns.text_pair, options.hint);
  const bool present = std::find(header.columns.begin(), header.columns.end(), columns.label) !=
                       header.columns.end();
  const int label = options.labels || (options.labels_if_present && present)
                        ? tsv_column(header, columns.label, options.hint)
                        : -1;
  TsvRows rows;
  rows.has_labels = label >= 0;
  std::string line;
  int64_t line_no = 1;
  while (read_tsv_line(in, line, line_no, path)) {
    if (line.empty()) continue;
    std::vector<std::string> f = split_tabs(line);
    ECMOE_CHECK(f.size() == header.columns.size(), path, ":", line_no, ": ", f.size(),
                " columns, expected ", header.columns.size(), " as in the header (",
                header.columns_found(), ")");
    if (blank(f[a]) || (b >= 0 && blank(f[b]))) {
      ++rows.empty_texts;
      if (options.skip_empty) continue;
    }
    if (label >= 0) {
      ECMOE_CHECK(!f[label].empty(), path, ":", line_no, ": empty label (column '", columns.label,
                  "')");
      rows.labels.push_back(std::move(f[label]));
    }
    rows.text_a.push_back(std::move(f[a]));
    rows.text_b.push_back(b >= 0 ? std::move(f[b]) : std::string());
    rows.lines.push_back(line_no);
  }
  return rows;
}

TsvRows read_tsv_rows(const std::string& path, const TsvColumns& columns,
                      const TsvReadOptions& options) {
  require_regular_file(path, "TSV file");
  std::ifstream in(path, std::ios::binary);
  ECMOE_CHECK(in.good(), "cannot read ", path);
  return read_tsv_rows(in, path, columns, options);
}

TsvTaskFiles tsv_task_files(const std::string& dir) {
  ECMOE_CHECK(fs::is_directory(dir), "task folder ", dir, " does not exist (tsv:DIR needs ", dir,
              "/train.tsv)");
  TsvTaskFiles files;
  files.train = (fs::path(dir) / "train.tsv").string();
  ECMOE_CHECK(fs::exists(files.train), "task folder ", dir, " has no train.tsv");
  for (auto [name, file] : {std::pair{"dev.tsv", &files.dev}, std::pair{"test.tsv", &files.test}})
    if (fs::exists(fs::path(dir) / name)) *file = (fs::path(dir) / name).string();
  return files;
}

TaskData load_tsv_task(const std::string& name, const TsvTaskFiles& files,
                       const TsvColumns& columns, double dev_fraction) {
  ECMOE_CHECK(!files.train.empty(), "task ", name, ": no training file");
  ECMOE_CHECK(dev_fraction > 0 && dev_fraction < 1, "dev_fraction must be in (0, 1), got ",
              dev_fraction);
  const TsvReadOptions read{.labels = true,
                            .skip_empty = true,
                            .hint =
                                "choose the columns with --text-column, --text-pair-column "
                                "and --label-column"};
  TaskData task;
  task.name = name;
  task.pairs = !columns.text_pair.empty();
  const TsvRows train = read_tsv_rows(files.train, columns, read);
  note_empty(train, files.train, task);
  ECMOE_CHECK(!train.text_a.empty(), files.train, ": no labelled rows");
  task.labels = train.labels;
  std::sort(task.labels.begin(), task.labels.end());
  task.labels.erase(std::unique(task.labels.begin(), task.labels.end()), task.labels.end());
  ECMOE_CHECK(task.labels.size() >= 2, files.train, ": every row has the label '", task.labels[0],
              "' (column '", columns.label, "'); a classifier needs at least 2 labels");
  std::vector<Example> pool = to_examples(train, task.labels, files.train, files.train);
  const std::string train_name = file_name(files.train);
  if (files.dev.empty()) {
    const int64_t n = int64_t(pool.size());
    const int64_t dev_count = std::max<int64_t>(1, std::llround(double(n) * dev_fraction));
    ECMOE_CHECK(dev_count < n, files.train, ": ", n, " rows are too few to hold out ", dev_count,
                " for dev and train on the rest; give a dev file");
    split_examples(std::move(pool), {0, dev_count, 0, kDevSplitSeed}, task);
    task.sources.train = train_name + " less the dev rows";
    char fraction[32];
    std::snprintf(fraction, sizeof(fraction), "%g", dev_fraction);
    task.sources.dev = std::to_string(dev_count) + " rows held out of " + train_name +
                       " (dev_fraction " + fraction + ")";
  } else {
    // In a fixed pseudo-random order as well, so max_train_examples takes a fair sample of a
    // file sorted by label.
    split_examples(std::move(pool), {0, 0, 0, kDevSplitSeed}, task);
    task.sources.train = train_name;
    const TsvRows dev = read_tsv_rows(files.dev, columns, read);
    note_empty(dev, files.dev, task);
    task.dev = to_examples(dev, task.labels, files.dev, files.train);
    ECMOE_CHECK(!task.dev.empty(), files.dev, ": no labelled rows");
    task.sources.dev = file_name(files.dev);
  }
  if (!files.test.empty()) {
    const TsvRows test = read_tsv_rows(files.test, columns, read);
    note_empty(test, files.test, task);
    task.test = to_examples(test, task.labels, files.test, files.train);
    ECMOE_CHECK(!task.test.empty(), files.test, ": no labelled rows");
    task.sources.test = file_name(files.test);
  }
  task.description = name + ": " + task.sources.train + " / dev: " + task.sources.dev +
                     " / test: " + (files.test.empty() ? "none" : task.sources.test);
  check_task(task);
  return task;
}

}  // namespace ecmoe::finetune
