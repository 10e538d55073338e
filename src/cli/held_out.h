// The held-out text a command evaluates a checkpoint on (eval, calibrate): the options that pick
// it and the fixed windows they give, checked against the checkpoint's tokenizer.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "data/token_dataset.h"
#include "train/batches.h"
#include "train/checkpoint.h"

namespace ecmoe::cli {

struct HeldOutArgs {
  std::string split = "val";
  int batches = 0;     // 0: the run's eval.batches, else 8
  int batch_size = 0;  // 0: the run's evaluation batch size
  std::string data;    // "": the folder recorded in the checkpoint's config
};

// Adds --split, --batches, --batch-size and --data to `cmd`.
void add_held_out_options(CLI::App* cmd, HeldOutArgs& args);

struct HeldOut {
  std::string dir;  // the data folder used
  data::TokenDataset dataset;
  int batches = 0;  // capped at what the split holds (train/eval_batches.h)
  BatchSpec spec;
  BatchSource source() const { return BatchSource::fixed(dataset, spec, batches); }
};

// Opens the split and resolves the defaults; the data must have the checkpoint's tokenizer. More
// batches than the split holds are capped, with a note on stderr (rank 0).
HeldOut open_held_out(const Checkpoint& checkpoint, const HeldOutArgs& args);

}  // namespace ecmoe::cli
