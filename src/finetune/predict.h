// Classifying encoded examples with an encoder and a classification head, as fine-tuning evaluates
// and `ecmoe predict` scores new text. Examples go in batches of similar lengths: sorted by length
// (then index), cut into batches of batch_size. The grouping is a pure function of the lengths and
// the batch size, and expert choice routes among the tokens of a batch, so the same examples at the
// same batch size get the same predictions in `finetune` and in `predict`, bit for bit.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/tensor_table.h"
#include "data/tokenizer.h"
#include "finetune/classifier_head.h"
#include "finetune/encode.h"
#include "finetune/saved_model.h"
#include "finetune/task_data.h"
#include "model/transformer.h"
#include "nn/buffer.h"
#include "train/train_device.h"

namespace ecmoe::finetune {

// The encoder runs wherever the model's backends are (Transformer::set_nn_backend: the CPU, or a
// device); the head runs on the host on the rows it pools, copied back (pooled_rows.h).
struct Classifier {
  Transformer& model;
  const float*
      params;  // the encoder's (model.table()'s layout) in the model's dense backend's memory
  const FlatBuffer& head;  // on the host
  Pooling pooling;
  int classes;
};

struct Classified {
  std::vector<int> predicted;        // per example: argmax of the logits (lowest index on ties)
  std::vector<float> probabilities;  // [examples, classes]: softmax of the logits
};

// Called after each batch with the examples done so far and the total.
using ClassifyProgress = std::function<void(int64_t done, int64_t total)>;

Classified classify(const Classifier& classifier, const EncodedSplit& split, int batch_size,
                    const ClassifyProgress& progress = {});

// One example's prediction as output by `ecmoe predict` and in finetune's predictions.tsv: TSV
//   [gold<TAB>]predicted<TAB>p_<label>... (one per class, in label order)<TAB>text[<TAB>text_pair]
// (probabilities with 6 decimals; tabs and newlines in texts become spaces), or a JSON line
//   {["gold": ...,] "predicted": ..., "probabilities": {"<label>": p, ...}, "text": ...[,
//   "text_pair": ...]}
// `gold` is read only with format.gold; `probabilities` holds the example's labels.size() values.
struct PredictionFormat {
  const std::vector<std::string>* labels = nullptr;
  bool gold = false;   // a gold column
  bool pairs = false;  // a text_pair column
};
std::string prediction_tsv_header(const PredictionFormat& format);
std::string prediction_tsv_row(const PredictionFormat& format, const Example& example, int gold,
                               int predicted, const float* probabilities);
std::string prediction_json_line(const PredictionFormat& format, const Example& example, int gold,
                                 int predicted, const float* probabilities);

// A saved classifier (saved_model.h) loaded and ready: the encoder, its parameters, the head and
// the tokenizer (`tokenizer`: a path, or "" for the recorded one). With a device the encoder runs
// there (its dense ops and MoE layers, the parameters copied into its memory); the head on the
// host.
class Predictor {
 public:
  Predictor(const SavedClassifier& saved, const std::string& tokenizer,
            const TrainDevice* device = nullptr);
  const ClassifierInfo& info() const { return info_; }
  // [CLS] a… [SEP] b…, cut to the model's max_len as in fine-tuning (encode.h); `truncated`
  // counts the examples cut.
  EncodedSplit encode(const std::vector<Example>& examples) const;
  Classified classify(const EncodedSplit& split, int batch_size,
                      const ClassifyProgress& progress = {});

 private:
  ClassifierInfo info_;
  data::Tokenizer tokenizer_;
  Transformer model_;
  TensorTable head_table_;  // the buffers keep pointers to their tables
  FlatBuffer params_, head_;
  nn::Buffer<float> params_on_device_;  // with a device: params_ in its memory
};

}  // namespace ecmoe::finetune
