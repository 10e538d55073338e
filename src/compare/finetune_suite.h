// Suite `finetune-small`: the paper's fine-tuning comparison (its Table 2) at small scale. The
// encoders pre-trained by suite paper-small — dense, top-1, top-2, EC c=2 and the two EC-CAP
// variants — are each fine-tuned on every task with 3 seeds, and the report gives test accuracy
// per task and the average, mean ± std, like the paper's table.
//   Seeds: a variant pre-trained with 3 seeds fine-tunes pre-training seed s with fine-tuning
//   seed s (so the spread covers both); a variant pre-trained once fine-tunes that checkpoint
//   with seeds 1, 2, 3.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "train/train_device.h"

namespace ecmoe::compare {

struct FinetuneSuiteOptions {
  std::string pretrained;                // paper-small's run folder (its --out)
  bool quick = false;                    // paper-small --quick's checkpoints, a few steps per run
  std::vector<std::string> tasks;        // empty: the built-in tasks
  std::string out;                       // run r writes <out>/<variant>/<task>-s<seed>/
  std::vector<std::string> sets;         // fine-tuning config overrides (ecmoe finetune --help)
  std::string cache_dir = "data/cache";  // where the built-in tasks' raw data is fetched
  std::FILE* log = stderr;
  // Not null: every run fine-tunes on this device (FinetuneOptions::device; one process).
  const TrainDevice* device = nullptr;
};

struct FinetuneRunInfo {
  std::string variant;     // pre-training variant, e.g. "EC c=2"
  std::string checkpoint;  // its checkpoint
  std::string task;        // task spec
  uint64_t seed = 1;       // fine-tuning seed
  std::string dir;         // where config.json and result.json go
};

// The runs, in report order (variant, then task, then seed). Checks every checkpoint exists.
std::vector<FinetuneRunInfo> finetune_suite_runs(const FinetuneSuiteOptions& options);

// Runs what is not finished yet (a run folder with a result.json of the same config is kept).
void run_finetune_suite(const std::vector<FinetuneRunInfo>& runs,
                        const FinetuneSuiteOptions& options);

struct FinetuneReportInfo {
  std::string command, commit, date;
  int threads = 0;
  double wall_seconds = 0;
};

// <path> (Markdown): test accuracy per variant and task, mean ± std over seeds, the average over
// tasks, macro-F1, the majority-class baseline, steps and seconds per run; a copy of every run's
// config.json and result.json under <path stem>/runs/.
void write_finetune_report(const std::string& path, const std::vector<FinetuneRunInfo>& runs,
                           const FinetuneReportInfo& info);

}  // namespace ecmoe::compare
