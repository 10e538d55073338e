// `ecmoe calibrate`: recomputes the threshold cutoffs of an expert-choice or threshold-routed
// checkpoint on held-out text: expert choice (evaluation capacity factor) runs over fixed windows
// of a split, each expert's cutoff becomes the mean over routing groups of the score of the k-th
// token it selected, and the checkpoint is rewritten atomically with everything else unchanged.
// Then threshold routing is evaluated on the same windows, to show the realised experts per token
// and per-expert load.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/held_out.h"
#include "core/error.h"
#include "data/token_dataset.h"
#include "io/dir_lock.h"
#include "io/output_dir.h"
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
  HeldOutArgs held_out;
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
  add_held_out_options(cmd, args->held_out);
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->callback([args] {
    require_one_process("calibrate");
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    // The checkpoint is rewritten in place: its folder must be writable, and no run may be
    // writing there meanwhile. Both are checked before the evaluations.
    std::string folder = std::filesystem::path(args->checkpoint).parent_path().string();
    if (folder.empty()) folder = ".";
    check_writable_dir(folder, "calibrate: the checkpoint's folder");
    const DirLock lock(folder, "checkpoint folder");
    const TrainConfig& config = checkpoint.config();
    ECMOE_CHECK(router_has_cutoffs(config.model.moe.router), "calibrate: '", args->checkpoint,
                "' routes with ", router_name(config.model.moe.router),
                ", which has no cutoffs (expert_choice and expert_threshold have)");
    const HeldOut held_out = open_held_out(checkpoint, args->held_out);

    Transformer choice(with_router(config.model, RouterKind::kExpertChoice));
    Transformer threshold(with_router(config.model, RouterKind::kExpertThreshold));
    FlatBuffer params(choice.table());
    AdamW adam(choice.table(), config.optimizer);
    TrainState state;
    checkpoint.load_training_state(params, adam, state);
    FlatBuffer router_state(choice.state_table());
    choice.init_state(router_state);

    const int batches = held_out.batches;
    const BatchSource source = held_out.source();
    const EvalResult ec = evaluate(choice, params, source, batches, &router_state);
    choice.update_cutoffs(router_state, ec.layers, 1.f);
    const EvalResult th = evaluate(threshold, params, source, batches, &router_state);
    save_checkpoint(args->checkpoint, config, checkpoint.data(), params, adam, state,
                    &router_state);

    if (args->json) {
      MetricsJson j;
      j["checkpoint"] = args->checkpoint;
      j["split"] = args->held_out.split;
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
                  args->checkpoint.c_str(), batches, args->held_out.split.c_str(),
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
