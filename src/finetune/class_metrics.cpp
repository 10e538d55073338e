#include "finetune/class_metrics.h"

#include <algorithm>
#include <cstddef>

#include "core/error.h"

namespace ecmoe::finetune {

ClassMetrics class_metrics(const std::vector<int>& gold, const std::vector<int>& predicted,
                           int n_classes) {
  ECMOE_CHECK(gold.size() == predicted.size(), "class_metrics: ", gold.size(), " labels but ",
              predicted.size(), " predictions");
  std::vector<int64_t> tp(n_classes, 0), gold_n(n_classes, 0), pred_n(n_classes, 0);
  ClassMetrics m;
  m.confusion.assign(size_t(n_classes), std::vector<int64_t>(size_t(n_classes), 0));
  int64_t correct = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    ECMOE_CHECK(
        gold[i] >= 0 && gold[i] < n_classes && predicted[i] >= 0 && predicted[i] < n_classes,
        "class_metrics: label out of range at ", i);
    gold_n[gold[i]] += 1;
    m.confusion[gold[i]][predicted[i]] += 1;
    pred_n[predicted[i]] += 1;
    if (gold[i] == predicted[i]) {
      tp[gold[i]] += 1;
      ++correct;
    }
  }
  m.examples = int64_t(gold.size());
  m.support = gold_n;
  m.precision.assign(size_t(n_classes), 0.0);
  m.recall.assign(size_t(n_classes), 0.0);
  m.f1.assign(size_t(n_classes), 0.0);
  for (int c = 0; c < n_classes; ++c) {
    if (pred_n[c] > 0) m.precision[c] = double(tp[c]) / double(pred_n[c]);
    if (gold_n[c] > 0) m.recall[c] = double(tp[c]) / double(gold_n[c]);
    if (gold_n[c] + pred_n[c] > 0) m.f1[c] = 2.0 * double(tp[c]) / double(gold_n[c] + pred_n[c]);
  }
  if (m.examples == 0) return m;
  m.accuracy = double(correct) / double(m.examples);
  double f1_sum = 0;
  int classes = 0;
  for (int c = 0; c < n_classes; ++c) {
    if (gold_n[c] == 0 && pred_n[c] == 0) continue;
    ++classes;
    // F1 = 2·TP / (2·TP + FP + FN) = 2·TP / (gold + predicted)
    f1_sum += m.f1[c];
  }
  m.macro_f1 = f1_sum / double(classes);
  return m;
}

int majority_class(const std::vector<int>& labels, int n_classes) {
  std::vector<int64_t> counts(n_classes, 0);
  for (int l : labels) counts.at(l) += 1;
  return int(std::max_element(counts.begin(), counts.end()) - counts.begin());
}

}  // namespace ecmoe::finetune
