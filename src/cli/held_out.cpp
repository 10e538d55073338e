#include "cli/held_out.h"

#include <cstdio>
#include <utility>

#include "cli/commands.h"
#include "core/error.h"
#include "data/input_files.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"
#include "train/eval_batches.h"

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

HeldOut open_held_out(const Checkpoint& checkpoint, const HeldOutArgs& args,
                      const TrainDevice* device) {
  const TrainConfig& config = checkpoint.config();
  check_evaluation_memory(config, args.batch_size, device);
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

HeldOut open_held_out_text(const Checkpoint& checkpoint, const HeldOutArgs& args,
                           const TextArgs& text, const TrainDevice* device) {
  const TrainConfig& config = checkpoint.config();
  check_evaluation_memory(config, args.batch_size, device);
  const std::string option = "--tokenizer PATH (the tokenizer of the data it was trained on)";
  const std::string tokenizer_path = checkpoint_tokenizer_path(checkpoint, text.tokenizer, option);
  const data::Tokenizer tokenizer = load_checkpoint_tokenizer(checkpoint, tokenizer_path, option);
  const data::InputFiles input =
      data::load_input_files(text.files, {text.include, text.document_bytes});
  if (!input.skipped.empty() && comm().is_root())
    std::fprintf(stderr, "%s\n", data::skipped_files_note(input).c_str());
  ECMOE_CHECK(!input.documents.empty(), "--text: the files hold no text after cleaning");
  const data::TokenStream stream = data::encode_documents(tokenizer, input.documents);
  data::TokenDataset dataset = data::TokenDataset::from_tokens(
      "text", stream.tokens, stream.documents, tokenizer.vocab_size(), tokenizer_path);
  const BatchSpec spec =
      batch_spec(config, args.batch_size > 0 ? args.batch_size : config.eval_batch_size());
  const int width = window_width(spec.kind, spec.seq_len);
  ECMOE_CHECK(dataset.size() >= width, "--text: the files give ", dataset.size(),
              " tokens, fewer than one window of ", width, " (the model's seq_len ", spec.seq_len,
              "): give more text");
  const int cover = max_fixed_batches(dataset, spec);
  const FixedBatches capped =
      args.batches > 0 ? cap_fixed_batches(dataset, "text", spec, args.batches, "--batches")
                       : FixedBatches{cover, ""};
  if (!capped.note.empty() && comm().is_root()) std::fprintf(stderr, "%s\n", capped.note.c_str());
  return {"", std::move(dataset), capped.batches, spec};
}

}  // namespace ecmoe::cli
