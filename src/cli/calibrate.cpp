// `ecmoe calibrate`: recomputes the threshold cutoffs of an expert-choice or threshold-routed
// checkpoint on held-out text: expert choice (evaluation capacity factor) runs over fixed windows
// of a split, each expert's cutoff becomes the mean over routing groups of the score of the k-th
// token it selected, and the checkpoint is rewritten atomically with everything else unchanged.
// Then threshold routing is evaluated on the same windows, to show the realised experts per token
// and per-expert load.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "data/token_dataset.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/report.h"

namespace ecmoe::cli {

namespace {
struct CalibrateArgs {
  std::string checkpoint;
  std::string split = "val";
  int batches = 0;
  int batch_size = 0;
  std::string data;
  bool json = false;
};

ModelConfig with_router(ModelConfig config, RouterKind router) {
  config.moe.router = router;
  return config;
}
}  // namespace

void register_calibrate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate", "Recompute a checkpoint's threshold cutoffs on held-out text (in place)");
  auto args = std::make_shared<CalibrateArgs>();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file, rewritten atomically")
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
                  "Prepared data folder (default: the one recorded in the checkpoint's config)");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->callback([args] {
    require_one_process("calibrate");
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    const TrainConfig& config = checkpoint.config();
    ECMOE_CHECK(router_has_cutoffs(config.model.moe.router), "calibrate: '", args->checkpoint,
                "' routes with ", router_name(config.model.moe.router),
                ", which has no cutoffs (expert_choice and expert_threshold have)");
    const std::string dir = args->data.empty() ? config.data.dir : args->data;
    const auto dataset = data::TokenDataset::open(dir, args->split);
    check_same_data(checkpoint, data_reference(dir, dataset));

    Transformer choice(with_router(config.model, RouterKind::kExpertChoice));
    Transformer threshold(with_router(config.model, RouterKind::kExpertThreshold));
    FlatBuffer params(choice.table());
    AdamW adam(choice.table(), config.optimizer);
    TrainState state;
    checkpoint.load_training_state(params, adam, state);
    FlatBuffer router_state(choice.state_table());
    choice.init_state(router_state);

    const int batches = args->batches > 0         ? args->batches
                        : config.eval.batches > 0 ? config.eval.batches
                                                  : 8;
    const BatchSpec spec =
        batch_spec(config, args->batch_size > 0 ? args->batch_size : config.eval_batch_size());
    const BatchSource source = BatchSource::fixed(dataset, spec, batches);
    const EvalResult ec = evaluate(choice, params, source, batches, &router_state);
    choice.update_cutoffs(router_state, ec.layers, 1.f);
    const EvalResult th = evaluate(threshold, params, source, batches, &router_state);
    save_checkpoint(args->checkpoint, config, checkpoint.data(), params, adam, state,
                    &router_state);

    if (args->json) {
      MetricsJson j;
      j["checkpoint"] = args->checkpoint;
      j["split"] = args->split;
      j["capacity_factor"] = config.model.moe.capacity_factor_eval;
      MetricsJson cutoffs;
      for (const TensorSpec& s : choice.state_table().specs()) {
        const float* v = router_state.get(s.name);
        cutoffs[s.name] = std::vector<float>(v, v + s.numel());
      }
      j["cutoffs"] = cutoffs;
      j["expert_choice"] = eval_json(choice.config(), ec);
      j["expert_threshold"] = eval_json(threshold.config(), th);
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("calibrated %s on %d batches of the %s split (c = %.2f)\n",
                  args->checkpoint.c_str(), batches, args->split.c_str(),
                  config.model.moe.capacity_factor_eval);
      for (const TensorSpec& s : choice.state_table().specs()) {
        std::printf("%s:", s.name.c_str());
        for (int64_t i = 0; i < s.numel(); ++i) std::printf(" %.4f", router_state.get(s.name)[i]);
        std::printf("\n");
      }
      std::printf("expert choice: %sthresholds: %s",
                  format_eval_report(choice.config(), ec).c_str(),
                  format_eval_report(threshold.config(), th).c_str());
    }
  });
}

}  // namespace ecmoe::cli
