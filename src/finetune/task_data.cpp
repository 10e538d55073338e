#include "finetune/task_data.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/rng.h"

namespace ecmoe::finetune {

SplitSizes fraction_split(int64_t n, double fraction, int64_t cap, int64_t max_train,
                          uint64_t seed) {
  int64_t k = int64_t(std::llround(double(n) * fraction));
  if (cap > 0) k = std::min(k, cap);
  return {k, k, max_train, seed};
}

void split_examples(std::vector<Example> pool, const SplitSizes& sizes, TaskData& task) {
  const int64_t n = int64_t(pool.size());
  ECMOE_CHECK(sizes.test_count + sizes.dev_count < n, "task ", task.name, ": ", n,
              " examples are too few for ", sizes.test_count, " test and ", sizes.dev_count,
              " dev examples and a training set");
  const Rng rng(sizes.seed, 0);
  std::vector<std::pair<uint64_t, int64_t>> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = {rng.bits(uint64_t(i)), i};
  std::sort(order.begin(), order.end());
  task.train.clear();
  task.dev.clear();
  task.test.clear();
  for (int64_t j = 0; j < n; ++j) {
    Example& e = pool[order[j].second];
    if (j < sizes.test_count)
      task.test.push_back(std::move(e));
    else if (j < sizes.test_count + sizes.dev_count)
      task.dev.push_back(std::move(e));
    else if (sizes.max_train == 0 || int64_t(task.train.size()) < sizes.max_train)
      task.train.push_back(std::move(e));
  }
}

std::vector<int64_t> class_counts(const std::vector<Example>& examples, int n_classes) {
  std::vector<int64_t> counts(n_classes, 0);
  for (const Example& e : examples) counts.at(e.label) += 1;
  return counts;
}

void check_task(const TaskData& task) {
  ECMOE_CHECK(task.labels.size() >= 2, "task ", task.name, " has fewer than 2 classes");
  const struct {
    const char* name;
    const std::vector<Example>* examples;
  } splits[] = {{"train", &task.train}, {"dev", &task.dev}, {"test", &task.test}};
  for (const auto& s : splits) {
    ECMOE_CHECK(!s.examples->empty() || s.examples == &task.test, "task ", task.name, ": the ",
                s.name, " split is empty");
    for (const Example& e : *s.examples)
      ECMOE_CHECK(e.label >= 0 && e.label < int(task.labels.size()), "task ", task.name, ": label ",
                  e.label, " out of range in the ", s.name, " split");
  }
}

}  // namespace ecmoe::finetune
