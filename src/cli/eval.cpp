// `ecmoe eval`: loss, perplexity and routing statistics of a checkpoint on fixed windows of a
// data split (the windows validation uses during training, for --split val).
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "data/token_dataset.h"
#include "model/transformer.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/report.h"

namespace ecmoe::cli {

namespace {
struct EvalArgs {
  std::string checkpoint;
  std::string split = "val";
  int batches = 0;
  int batch_size = 0;
  std::string data;
  bool json = false;
};
}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint: loss, perplexity, routing");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Checkpoint file (<out>/checkpoint.safetensors)")
      ->required();
  cmd->add_option("--split", args->split, "Data split: val or train")
      ->check(CLI::IsMember({"val", "train"}))
      ->capture_default_str();
  cmd->add_option("--batches", args->batches,
                  "Batches of fixed windows (default: the run's eval.batches, else 8)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", args->batch_size,
                  "Sequences per batch (default: the run's evaluation batch size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--data", args->data,
                  "Prepared data folder (default: the one recorded in the checkpoint's config); "
                  "it must have the same tokenizer");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->callback([args] {
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    const TrainConfig& config = checkpoint.config();
    const std::string dir = args->data.empty() ? config.data.dir : args->data;
    const auto dataset = data::TokenDataset::open(dir, args->split);
    check_same_data(checkpoint, data_reference(dir, dataset));

    Transformer model(config.model);
    model.set_comm(&comm());
    FlatBuffer params(model.table());
    checkpoint.load_params(params);
    const int batches = args->batches > 0         ? args->batches
                        : config.eval.batches > 0 ? config.eval.batches
                                                  : 8;
    const BatchSpec spec =
        batch_spec(config, args->batch_size > 0 ? args->batch_size : config.eval_batch_size());
    check_batch_splits(spec.batch_size, comm(), "--batch-size");
    const EvalResult r =
        evaluate(model, params, BatchSource::fixed(dataset, spec, batches), batches, &comm());
    if (!comm().is_root()) return;

    if (args->json) {
      MetricsJson j;
      j["checkpoint"] = args->checkpoint;
      j["step"] = checkpoint.step();
      j["split"] = args->split;
      j["model"] = model_kind_name(config.model.kind);
      j["router"] = router_name(config.model.moe.router);
      j.update(eval_json(config.model, r));
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%s at step %lld, %s split of %s:\n%s", args->checkpoint.c_str(),
                  (long long)checkpoint.step(), args->split.c_str(), dir.c_str(),
                  format_eval_report(config.model, r).c_str());
    }
  });
}

}  // namespace ecmoe::cli
