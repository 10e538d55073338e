#include "cli/held_out.h"

#include <cstdio>
#include <utility>

#include "cli/commands.h"
#include "train/eval_batches.h"
#include "train/memory_estimate.h"

namespace ecmoe::cli {

void add_held_out_options(CLI::App* cmd, HeldOutArgs& args) {
  cmd->add_option("--split", args.split, "Data split: val or train")
      ->check(CLI::IsMember({"val", "train"}))
      ->capture_default_str();
  cmd->add_option("--batches", args.batches,
                  "Batches of fixed windows (default: the run's eval.batches, else 8)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", args.batch_size,
                  "Sequences per batch (default: the run's evaluation batch size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--data", args.data,
                  "Prepared data folder (default: the one recorded in the checkpoint's config); "
                  "it must have the same tokenizer");
}

HeldOut open_held_out(const Checkpoint& checkpoint, const HeldOutArgs& args) {
  const TrainConfig& config = checkpoint.config();
  check_eval_memory(config, args.batch_size);
  const std::string dir = checkpoint_data_dir(checkpoint, args.data);
  data::TokenDataset dataset = data::TokenDataset::open(dir, args.split);
  check_same_data(checkpoint, data_reference(dir, dataset));
  const int requested = args.batches > 0          ? args.batches
                        : config.eval.batches > 0 ? config.eval.batches
                                                  : 8;
  const BatchSpec spec =
      batch_spec(config, args.batch_size > 0 ? args.batch_size : config.eval_batch_size());
  const FixedBatches capped =
      cap_fixed_batches(dataset, args.split, spec, requested,
                        args.batches > 0 ? "--batches" : "the checkpoint's eval.batches");
  if (!capped.note.empty() && comm().is_root()) std::fprintf(stderr, "%s\n", capped.note.c_str());
  return {dir, std::move(dataset), capped.batches, spec};
}

}  // namespace ecmoe::cli
