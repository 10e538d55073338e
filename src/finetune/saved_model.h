// A fine-tuned classifier as one safetensors file (docs/checkpoint-format.md, "Fine-tuned
// classifiers"): the encoder's parameters under their pre-training names, the head under
// "classifier.", and in the metadata everything `ecmoe predict` needs to use it alone: the
// encoder's pre-training config (model config), the fine-tuning config, the label names in index
// order, pooling, max_len, and the tokenizer reference and checksum as the pre-training checkpoint
// recorded them. Checksums over the tensor bytes and the metadata, as in training checkpoints.
// Written atomically by `ecmoe finetune --out DIR` to DIR/model.safetensors.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/aligned.h"
#include "data/tokenizer.h"
#include "finetune/classifier_head.h"
#include "finetune/finetune_config.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

namespace ecmoe::finetune {

inline constexpr const char* kClassifierFormat = "ecmoe-finetuned-classifier";
inline constexpr int kClassifierFormatVersion = 1;
inline constexpr const char* kClassifierFile = "model.safetensors";
inline constexpr const char* kHeadPrefix = "classifier.";

struct ClassifierInfo {
  TrainConfig pretrain;  // the encoder's pre-training config; model.vocab_size resolved
  FinetuneConfig finetune;
  std::vector<std::string> labels;  // index = class id
  Pooling pooling = Pooling::kMean;
  int max_len = 0;     // tokens per example, [CLS] included (resolved: never 0)
  bool pairs = false;  // trained on sentence pairs
  DataReference data;  // the tokenizer: as the pre-training checkpoint recorded it
  std::string pretrain_checkpoint;
  int64_t pretrain_step = 0;
};

void save_classifier(const std::string& path, const ClassifierInfo& info, const FlatBuffer& params,
                     const FlatBuffer& head);

class SavedClassifier {
 public:
  // Opens and validates (format, checksums, configs, labels); a training checkpoint or another
  // file is an error saying what to pass instead.
  static SavedClassifier open(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const ClassifierInfo& info() const { return info_; }
  // Parameters of model_table and the head (head_table(d_model, classes)); finite.
  void load(FlatBuffer& params, FlatBuffer& head) const;
  // The tokenizer it was trained with: `given` (--tokenizer) or the recorded one, found as
  // load_checkpoint_tokenizer finds it; its checksum must be the recorded one.
  data::Tokenizer tokenizer(const std::string& given) const;

 private:
  explicit SavedClassifier(SafetensorsFile file) : file_(std::move(file)) {}
  SafetensorsFile file_;
  ClassifierInfo info_;
};

}  // namespace ecmoe::finetune
