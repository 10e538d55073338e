// `ecmoe train`: a run from a config file (configs/NAME.json or a path) with --set overrides;
// prints the final validation perplexity and the routing histogram. docs/training.md.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "train/checkpoint.h"
#include "train/config_overrides.h"
#include "train/progress.h"
#include "train/report.h"
#include "train/trainer.h"

namespace ecmoe::cli {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string out;
  bool resume = false;
  double time_limit_minutes = 0;
  bool print_config = false;
  std::string device = "cpu";
};

// Every config key with its built-in default, for --help.
std::string config_keys_help() {
  std::string text =
      "Config keys (--set KEY=VALUE; built-in defaults shown, a config file overrides them):\n";
  for (const auto& [key, value] : flatten_config(config_to_json(TrainConfig{})))
    text += "  " + key + " = " + value.dump() + "\n";
  return text;
}

ConfigJson base_config(const TrainArgs& args) {
  // `--resume` without --config continues with the checkpoint's own config.
  if (args.resume && args.config.empty()) {
    ECMOE_CHECK(!args.out.empty(), "--resume without --config needs --out DIR (the run to resume)");
    const auto path = (std::filesystem::path(args.out) / kCheckpointFile).string();
    ECMOE_CHECK(std::filesystem::exists(path), "nothing to resume: ", path, " does not exist");
    return config_to_json(Checkpoint::open(path).config());
  }
  return read_config_file(resolve_config_path(args.config.empty() ? "small" : args.config));
}

// What to do with the checkpoint just made, with its real path.
void print_next_commands(const TrainResult& r) {
  const std::string& ckpt = r.checkpoint;
  std::printf("next: ecmoe eval --checkpoint %s\n", ckpt.c_str());
  if (r.config.model.kind == ModelKind::kDecoder)
    std::printf("      ecmoe generate --checkpoint %s --prompt \"The\"\n", ckpt.c_str());
  else
    std::printf("      ecmoe finetune --checkpoint %s --task polarity\n", ckpt.c_str());
}

}  // namespace

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model (masked LM or next-token LM)");
  auto args = std::make_shared<TrainArgs>();
  cmd->add_option("--config", args->config,
                  "Config: a name (configs/NAME.json, looked up in the current directory, then "
                  "above the ecmoe executable) or a path to a JSON file. Default: small; with "
                  "--resume: the checkpoint's config");
  cmd->add_option("--set", args->sets,
                  "Override a config key, e.g. --set model.moe.router=top2 (repeatable). Setting "
                  "model.moe.router also resets capacity_factor_train/eval, load_balance_weight "
                  "and z_loss_weight to that router's defaults, unless they are --set too")
      ->type_name("KEY=VALUE");
  auto* out = cmd->add_option("--out", args->out, "Output folder (same as --set out=DIR)");
  cmd->add_flag("--resume", args->resume,
                "Continue the run in the output folder from its checkpoint (bit-identical to a "
                "run that was never stopped)");
  cmd->add_option("--time-limit", args->time_limit_minutes,
                  "Stop after this many minutes of wall time, at the next step boundary, with a "
                  "checkpoint (no final evaluation); --resume continues. 0: no limit")
      ->check(CLI::NonNegativeNumber)
      ->type_name("MINUTES");
  cmd->add_option("--device", args->device,
                  "Where to train: cpu, or cuda (an NVIDIA GPU; needs a build with "
                  "-DECMOE_CUDA=ON, one process, docs/cuda.md). Checkpoints are the same files "
                  "either way: a run resumes on the other device")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--print-config", args->print_config,
                "Print the resolved config as JSON and exit without training");
  cmd->footer(config_keys_help());
  cmd->callback([args, out] {
    ECMOE_CHECK(out->count() == 0 || !args->out.empty(),
                "--out is empty: give the folder to write into");
    ConfigJson json = base_config(*args);
    apply_overrides(json, args->sets);
    if (!args->out.empty()) json["out"] = args->out;
    TrainConfig config = config_from_json(json);
    config.validate();
    if (args->print_config) {
      std::printf("%s\n", config_to_json(config).dump(2).c_str());
      return;
    }
    const TrainResult r = train(config, {.resume = args->resume,
                                         .terminal = Progress::stderr_is_terminal(),
                                         .comm = &comm(),
                                         .time_limit_seconds = args->time_limit_minutes * 60.0,
                                         .device = train_device(args->device)});
    if (!comm().is_root()) return;
    if (r.stopped) {
      std::printf(
          "stopped by the time limit at step %lld of %lld (%s of steps, %.0f tokens/s); "
          "checkpoint: %s\ncontinue with: ecmoe train --resume --out %s\n",
          (long long)r.last_step, (long long)r.config.steps, format_duration(r.seconds).c_str(),
          r.tokens_per_second, r.checkpoint.c_str(), r.config.out.c_str());
      return;
    }
    if (r.last_step == r.first_step)
      std::printf("nothing to train: %s is already at step %lld = steps; checkpoint: %s\n",
                  r.config.out.c_str(), (long long)r.last_step, r.checkpoint.c_str());
    else
      std::printf("trained steps %lld..%lld in %s (%.0f tokens/s); checkpoint: %s\n",
                  (long long)r.first_step, (long long)r.last_step,
                  format_duration(r.seconds).c_str(), r.tokens_per_second, r.checkpoint.c_str());
    if (r.final_eval)
      std::printf("validation %s", format_eval_report(r.config.model, *r.final_eval).c_str());
    print_next_commands(r);
  });
}

}  // namespace ecmoe::cli
