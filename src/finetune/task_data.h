// A classification task in memory: labelled examples (one text, or a pair joined with [SEP] when
// encoded) in three fixed splits. Loaders (glue_tsv.h, builtin_tasks.h) produce it; the split of
// a task never depends on the fine-tuning seed, so every run of a comparison sees the same data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ecmoe::finetune {

struct Example {
  std::string text_a;
  std::string text_b;  // empty for single-sentence tasks
  int label = 0;       // index into TaskData::labels
};

struct TaskData {
  std::string name;                       // e.g. "polarity", "glue:sst2"
  std::vector<std::string> labels;        // class names, index = label id
  bool pairs = false;                     // examples are sentence pairs
  std::vector<Example> train, dev, test;  // test may be empty (a tsv: task without a test file)
  std::string description;  // where the data came from and how it was split, for reports
  // What each split is, in a few words for reports and result.json, e.g. GLUE's "90% of
  // train.tsv", "10% of train.tsv", "dev.tsv" (GLUE's dev file is this task's test split).
  struct SplitSources {
    std::string train, dev, test;
  } sources;
  std::vector<std::string> warnings;  // found while loading (e.g. rows skipped), one line each
};

// How a pool of labelled examples is cut into splits: the pool is put in a fixed pseudo-random
// order (Rng(seed, 0) keys, ties by index), then test takes the first test_count, dev the next
// dev_count and train the rest, capped at max_train (0: no cap).
struct SplitSizes {
  int64_t test_count = 0;
  int64_t dev_count = 0;
  int64_t max_train = 0;
  uint64_t seed = 0;
};

// The counts for a pool of n: `fraction` of n each for dev and test, each capped at `cap`
// (0: no cap).
SplitSizes fraction_split(int64_t n, double fraction, int64_t cap, int64_t max_train,
                          uint64_t seed);

void split_examples(std::vector<Example> pool, const SplitSizes& sizes, TaskData& task);

// Examples per class of a split.
std::vector<int64_t> class_counts(const std::vector<Example>& examples, int n_classes);

// Throws unless train and dev are non-empty and every label is in range (test may be empty).
void check_task(const TaskData& task);

}  // namespace ecmoe::finetune
