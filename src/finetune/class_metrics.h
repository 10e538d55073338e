// Classification metrics of predictions against gold labels.
#pragma once
#include <cstdint>
#include <vector>

namespace ecmoe::finetune {

struct ClassMetrics {
  double accuracy = 0;
  // Mean F1 over the classes that occur in the gold labels or the predictions (scikit-learn's
  // "macro" average): a classifier that always answers the majority class scores low here even
  // on an unbalanced task where its accuracy looks good.
  double macro_f1 = 0;
  int64_t examples = 0;
  // Per class (index = label id): precision TP/(TP+FP), recall TP/(TP+FN) and F1, each 0 when
  // its denominator is 0 (scikit-learn's zero_division=0); support = gold examples of the class.
  std::vector<double> precision, recall, f1;
  std::vector<int64_t> support;
  std::vector<std::vector<int64_t>> confusion;  // [gold][predicted] counts
};

ClassMetrics class_metrics(const std::vector<int>& gold, const std::vector<int>& predicted,
                           int n_classes);

// The most frequent class of `labels` (lowest index on ties).
int majority_class(const std::vector<int>& labels, int n_classes);

}  // namespace ecmoe::finetune
