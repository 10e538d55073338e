#include "finetune/predict.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>

#include "core/error.h"
#include "finetune/pooled_rows.h"
#include "finetune/tsv_table.h"

namespace ecmoe::finetune {

Classified classify(const Classifier& c, const EncodedSplit& split, int batch_size,
                    const ClassifyProgress& progress) {
  ECMOE_CHECK(batch_size >= 1, "classify: the batch size must be positive");
  const int64_t n = int64_t(split.tokens.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return split.tokens[a].size() < split.tokens[b].size();
  });
  Classified out;
  out.predicted.resize(static_cast<size_t>(n));
  out.probabilities.resize(size_t(n) * size_t(c.classes));
  HeadState state;
  PooledRows rows;
  std::vector<int32_t> labels;
  const int d = c.model.config().d_model;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, n - start);
    const std::span<const int64_t> idx(order.data() + start, size_t(count));
    const Batch batch = make_padded_batch(split, idx, labels);
    c.model.forward_hidden_on_backend(c.params, batch, /*training=*/false, 0);
    const HeadShape shape{batch.batch_size, batch.seq_len, d, c.classes};
    const float* hidden = rows.to_host(c.model.nn_backend(), c.model.final_hidden(),
                                       batch.valid_len.data(), c.pooling, shape);
    head_forward(state, hidden, batch.valid_len.data(), nullptr, c.head.get("head.weight"),
                 c.head.get("head.bias"), c.pooling, shape);
    for (int b = 0; b < batch.batch_size; ++b) {
      out.predicted[idx[b]] = head_prediction(state, b, c.classes);
      const float* logits = state.logits.data() + int64_t(b) * c.classes;
      const float top = *std::max_element(logits, logits + c.classes);
      double sum = 0;
      for (int k = 0; k < c.classes; ++k) sum += std::exp(double(logits[k] - top));
      float* p = out.probabilities.data() + idx[b] * c.classes;
      for (int k = 0; k < c.classes; ++k) p[k] = float(std::exp(double(logits[k] - top)) / sum);
    }
    if (progress) progress(start + count, n);
  }
  return out;
}

std::string prediction_tsv_header(const PredictionFormat& f) {
  std::string line = f.gold ? "gold\tpredicted" : "predicted";
  for (const std::string& l : *f.labels) {
    line += "\tp_";
    line += l;
  }
  line += f.pairs ? "\ttext\ttext_pair\n" : "\ttext\n";
  return line;
}

std::string prediction_tsv_row(const PredictionFormat& f, const Example& e, int gold, int predicted,
                               const float* probabilities) {
  const std::vector<std::string>& labels = *f.labels;
  std::string line;
  if (f.gold) {
    line += labels.at(size_t(gold));
    line += '\t';
  }
  line += labels.at(size_t(predicted));
  char number[32];
  for (size_t c = 0; c < labels.size(); ++c) {
    std::snprintf(number, sizeof(number), "\t%.6f", double(probabilities[c]));
    line += number;
  }
  line += '\t';
  line += tsv_cell(e.text_a);
  if (f.pairs) {
    line += '\t';
    line += tsv_cell(e.text_b);
  }
  line += '\n';
  return line;
}

std::string prediction_json_line(const PredictionFormat& f, const Example& e, int gold,
                                 int predicted, const float* probabilities) {
  const std::vector<std::string>& labels = *f.labels;
  nlohmann::ordered_json j;
  if (f.gold) j["gold"] = labels.at(size_t(gold));
  j["predicted"] = labels.at(size_t(predicted));
  nlohmann::ordered_json p = nlohmann::ordered_json::object();
  // 6 decimals, as in the TSV: JSON numbers print as the shortest text that reads back.
  for (size_t c = 0; c < labels.size(); ++c)
    p[labels[c]] = std::round(double(probabilities[c]) * 1e6) / 1e6;
  j["probabilities"] = p;
  j["text"] = e.text_a;
  if (f.pairs) j["text_pair"] = e.text_b;
  return j.dump() + "\n";
}

Predictor::Predictor(const SavedClassifier& saved, const std::string& tokenizer,
                     const TrainDevice* device)
    : info_(saved.info()),
      tokenizer_(saved.tokenizer(tokenizer)),
      model_(info_.pretrain.model),
      head_table_(head_table(info_.pretrain.model.d_model, int(info_.labels.size()))),
      params_(model_.table()),
      head_(head_table_) {
  saved.load(params_, head_);
  if (device) {
    ECMOE_CHECK(device->nn != nullptr, "device ", device->name, " has no dense backend");
    params_on_device_ = place_on_device(model_, *device, params_);
  }
}

EncodedSplit Predictor::encode(const std::vector<Example>& examples) const {
  return encode_split(examples, tokenizer_, info_.max_len);
}

Classified Predictor::classify(const EncodedSplit& split, int batch_size,
                               const ClassifyProgress& progress) {
  const float* params = params_on_device_.empty() ? params_.data() : params_on_device_.data();
  const Classifier c{model_, params, head_, info_.pooling, int(info_.labels.size())};
  return finetune::classify(c, split, batch_size, progress);
}

}  // namespace ecmoe::finetune
