// One fine-tuning run: a pre-trained encoder checkpoint (its parameters only; the optimizer starts
// afresh) plus a new classification head, trained together on a task's train split with AdamW,
// linear warm-up and decay, evaluated on dev every eval_interval steps; the parameters of the best
// dev accuracy are kept (early stopping with patience) and scored on test. With config.out set,
// <out> gets config.json, result.json, predictions.tsv (of test, or dev without a test split) and
// the fine-tuned model, model.safetensors (saved_model.h), for `ecmoe predict`. The whole encoder
// is trained, routers included: expert choice picks its top-k tokens per expert among the tokens of
// each fine-tuning batch, [PAD] included (transformer.h). Deterministic for a config: batches,
// head init and router jitter are pure functions of config.seed, and every kernel is bitwise
// thread-count invariant.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "finetune/class_metrics.h"
#include "finetune/finetune_config.h"
#include "finetune/task_data.h"
#include "train/train_device.h"

namespace ecmoe::finetune {

struct FinetuneOptions {
  std::FILE* progress = stderr;  // one line per evaluation; nullptr: silent
  std::FILE* warnings = stderr;  // "ecmoe: warning: ..." lines (also in the result); nullptr: none
  // With config.out: also write the fine-tuned model, <out>/model.safetensors (saved_model.h).
  bool save_model = true;
  // Not null: the encoder fine-tunes and evaluates on this device (train/train_device.h; its
  // parameters, gradients and AdamW state there, the head on the host: encoder_training.h), with
  // the same steps, results and files as on the host. One process.
  const TrainDevice* device = nullptr;
};

struct EvalPoint {
  int64_t step = 0;
  double train_loss = 0;  // mean over the steps since the previous evaluation
  ClassMetrics dev;
};

struct FinetuneResult {
  std::string task;
  std::string checkpoint;
  std::string device = "cpu";              // where the encoder ran (FinetuneOptions::device)
  Precision precision = Precision::kFp32;  // of the encoder's GEMMs (FinetuneConfig::precision)
  std::vector<std::string> labels;
  TaskData::SplitSources sources;  // what each split is (test: "" without a test split)
  int64_t train_examples = 0, dev_examples = 0, test_examples = 0;
  ClassMetrics dev;  // of the kept (best) parameters
  // Of the kept parameters; without a test split (a tsv task without a test file) has_test is
  // false, test is empty and the figures to report are dev's.
  bool has_test = true;
  ClassMetrics test;
  // Always answering the training set's most frequent class, scored on test (dev without a test
  // split): the bar to beat.
  ClassMetrics majority_baseline;
  int64_t best_step = 0;
  int64_t planned_steps = 0;  // config.steps, or the token budget's count
  int64_t steps = 0;          // updates run (fewer than planned when stopped early)
  bool stopped_early = false;
  double seconds = 0;        // the whole run, loading and evaluation included
  double train_seconds = 0;  // of which training steps
  double eval_seconds = 0;   // of which dev and test evaluation
  std::vector<EvalPoint> history;
  // One line each: truncated and empty texts, lopsided splits, no test split.
  std::vector<std::string> warnings;
  std::string model_file;  // <out>/model.safetensors when written, else ""
};

// Loads the task (load_task) and runs.
FinetuneResult run_finetune(const FinetuneConfig& config, const FinetuneOptions& options = {});
// With a task already in memory (tests, or a suite that reuses one task across runs).
FinetuneResult run_finetune(const FinetuneConfig& config, const TaskData& task,
                            const FinetuneOptions& options = {});

ConfigJson result_to_json(const FinetuneResult& result);

}  // namespace ecmoe::finetune
