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
};

ClassMetrics class_metrics(const std::vector<int>& gold, const std::vector<int>& predicted,
                           int n_classes);

// The most frequent class of `labels` (lowest index on ties).
int majority_class(const std::vector<int>& labels, int n_classes);

}  // namespace ecmoe::finetune
