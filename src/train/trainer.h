// The training loop: for each step, a batch (pure function of the seeds and the step), forward,
// backward, global-norm clipping, AdamW at the scheduled learning rate; metrics to
// <out>/metrics.jsonl, progress on stderr, validation and checkpoints at their intervals, and a
// final checkpoint and validation. Non-finite values stop the run at once, naming the step and
// the first tensor that went bad, and are never written to a checkpoint.
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "dist/comm.h"
#include "train/evaluate.h"
#include "train/train_config.h"
#include "train/train_device.h"

namespace ecmoe {

struct TrainOptions {
  // Continue from <out>/checkpoint.safetensors (its config must match; checkpoint.h). Without it,
  // an output folder that already holds a checkpoint is refused rather than overwritten.
  bool resume = false;
  bool terminal = false;         // progress as a bar redrawn in place, else plain lines
  std::FILE* progress = stderr;  // nullptr: no progress output
  // MPI ranks (docs/architecture.md): experts sharded, the rest data-parallel; config.batch_size
  // is the global batch. Rank 0 alone writes metrics, progress and checkpoints. nullptr: one
  // process.
  const dist::Comm* comm = nullptr;
  // > 0: stop at the first step boundary after this many seconds of wall time since train()
  // began, with a checkpoint and a "stop" metrics line, and without the final evaluation
  // (TrainResult::stopped); --resume continues bit-exactly. For machines lent by the command
  // (a GPU command runs at most 10 minutes): long runs go on over several commands.
  double time_limit_seconds = 0;
  // Not null: the steps and evaluations run on this device (train/train_device.h), the host
  // buffers only mirror it for checkpoints. One process only.
  const TrainDevice* device = nullptr;
};

struct TrainResult {
  TrainConfig config;      // as run: model.vocab_size resolved from the data
  int64_t first_step = 0;  // steps already done when this invocation started
  int64_t last_step = 0;   // steps done at the end
  double seconds = 0;      // wall time of the steps (evaluations and checkpoints excluded)
  double tokens_per_second = 0;
  std::string checkpoint;                // path of the final checkpoint
  std::optional<EvalResult> final_eval;  // absent when eval.batches is 0, or when stopped
  bool stopped = false;                  // the time limit ended this invocation before `steps`
};

TrainResult train(TrainConfig config, const TrainOptions& options);

}  // namespace ecmoe
