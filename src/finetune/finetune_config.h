// Everything one fine-tuning run is made of. Like TrainConfig it has one JSON form (written to
// <out>/config.json, and the `--set KEY=VALUE` names of `ecmoe finetune`), produced from the
// struct. Defaults size one run of a built-in task with the `small` model at about 20-30 s on 2
// cores (docs/finetune.md).
#pragma once
#include <cstdint>
#include <string>

#include "core/precision.h"
#include "finetune/classifier_head.h"
#include "optim/lr_schedule.h"
#include "train/train_config.h"

namespace ecmoe::finetune {

struct FinetuneConfig {
  std::string checkpoint;         // a checkpoint written by `ecmoe train`
  std::string task = "polarity";  // builtin_tasks.h: a built-in name, glue:NAME:DIR, tsv:DIR, tsv
  // Task "tsv" (`--train FILE [--dev FILE] [--test FILE]`): the files (tsv_task.h).
  std::string train_file, dev_file, test_file;
  // tsv tasks: the columns of the text, of the pair's second text ("": single texts), of the label.
  std::string text_column = "text", text_pair_column, label_column = "label";
  // tsv and glue tasks without a dev file: the share of the training rows held out as dev.
  float dev_fraction = 0.1f;
  std::string tokenizer;  // empty: the checkpoint's (its checksum must match either way)
  std::string cache_dir = "data/cache";  // raw task data is fetched here
  // Mean over the valid positions, or the [CLS] token prepended to every example. Mean is the
  // default: pre-training never trains the [CLS] slot, and with a run this short mean pooling
  // learned better (polarity test accuracy 0.63 vs 0.53, docs/finetune.md).
  Pooling pooling = Pooling::kMean;
  int max_len = 0;  // tokens per example, [CLS] included, cut beyond; 0: the model's seq_len
  // Updates: `steps`, or with steps 0 as many as it takes the run's batches (padded to their
  // longest sequence, as run) to hold `token_budget` tokens, clamped to [20, 2000]: short-sentence
  // and long-document tasks then cost about the same time.
  int64_t steps = 0;
  int64_t token_budget = 120000;
  // Training examples used: the first max_train_examples of the task's (fixed, shuffled) train
  // split; 0: all. A budgeted run reads only a few thousand, and encoding all would cost more.
  int64_t max_train_examples = 4000;
  int batch_size = 32;
  int eval_batch_size = 64;
  float peak_lr = 3e-4f;
  float warmup_fraction = 0.1f;  // linear warm-up over this share of `steps`, then linear decay
  float weight_decay = 0.01f;
  float clip_norm = 1.f;  // global norm over the encoder and the head; 0: no clipping
  float head_init_std = 0.02f;
  int64_t eval_interval = 0;  // dev evaluation every N steps and after the last; 0: steps / 5
  int patience = 3;           // stop after this many evaluations without a better dev accuracy
                              // (0: never stop early)
  uint64_t seed = 1;          // head init, batch order, router jitter
  // Arithmetic of the encoder's GEMMs while fine-tuning and evaluating: fp32, or bf16 operands
  // with fp32 accumulation (as training's `precision`, docs/architecture.md); the checkpoint's
  // own precision does not carry over. The head and the loss stay fp32.
  Precision precision = Precision::kFp32;
  // empty: write nothing; else <out>/config.json, result.json, predictions.tsv and the fine-tuned
  // model, model.safetensors (saved_model.h)
  std::string out;

  // The learning-rate schedule of a run of `total` steps: linear warm-up over warmup_fraction of
  // them (at least 1), then linear decay (LrDecay::Linear).
  LrSchedule schedule(int64_t total) const;
  int64_t resolved_eval_interval(int64_t total) const;
  void validate() const;  // throws ecmoe::Error naming the bad field
};

ConfigJson finetune_config_to_json(const FinetuneConfig& config);
// Strict: unknown keys and wrongly typed values are errors naming the key.
FinetuneConfig finetune_config_from_json(const ConfigJson& json);

}  // namespace ecmoe::finetune
