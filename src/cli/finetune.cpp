// `ecmoe finetune`: fine-tune a pre-trained encoder checkpoint on a classification task and print
// dev and test accuracy (docs/finetune.md).
#include "finetune/finetune.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "finetune/builtin_tasks.h"
#include "train/config_overrides.h"

namespace ecmoe::cli {

namespace {

struct FinetuneArgs {
  std::string checkpoint;
  std::string task;
  std::vector<std::string> sets;
  std::string out;
  uint64_t seed = 0;
  bool seed_given = false;
  bool json = false;
};

std::string keys_help() {
  std::string text = "Config keys (--set KEY=VALUE; defaults shown):\n";
  for (const auto& [key, value] :
       flatten_config(finetune::finetune_config_to_json(finetune::FinetuneConfig{})))
    text += "  " + key + " = " + value.dump() + "\n";
  text += "Tasks: ";
  for (const auto& name : finetune::builtin_task_names()) text += name + ", ";
  text += "or glue:NAME:DIR with NAME one of sst2, cola, mrpc, qqp, mnli, rte\n";
  return text;
}

void print_metrics(const char* split, const finetune::ClassMetrics& m) {
  std::printf("%-9s accuracy %.4f  macro-F1 %.4f  (%lld examples)\n", split, m.accuracy, m.macro_f1,
              (long long)m.examples);
}

}  // namespace

void register_finetune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "finetune", "Fine-tune a pre-trained encoder with a classification head on a task");
  auto args = std::make_shared<FinetuneArgs>();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint written by `ecmoe train`")
      ->required();
  cmd->add_option("--task", args->task,
                  "polarity, reviews, spam, supersense, or glue:NAME:DIR (GLUE TSV files)")
      ->required();
  cmd->add_option("--seed", args->seed, "Seed: head init, batch order, router jitter")
      ->each([args](const std::string&) { args->seed_given = true; });
  cmd->add_option("--set", args->sets, "Override a config key (repeatable)")
      ->type_name("KEY=VALUE");
  auto* out =
      cmd->add_option("--out", args->out, "Write config.json and result.json into this folder");
  cmd->add_flag("--json", args->json, "Print the result as JSON instead of a summary");
  cmd->footer(keys_help());
  cmd->callback([args, out] {
    require_one_process("finetune");
    ECMOE_CHECK(out->count() == 0 || !args->out.empty(),
                "--out is empty: give the folder to write into");
    ConfigJson json = finetune::finetune_config_to_json(finetune::FinetuneConfig{});
    apply_overrides(json, args->sets);
    json["checkpoint"] = args->checkpoint;
    json["task"] = args->task;
    if (args->seed_given) json["seed"] = args->seed;
    if (!args->out.empty()) json["out"] = args->out;
    const finetune::FinetuneConfig config = finetune::finetune_config_from_json(json);
    const finetune::FinetuneResult r = finetune::run_finetune(config);
    if (args->json) {
      std::printf("%s\n", finetune::result_to_json(r).dump(2).c_str());
      return;
    }
    std::printf(
        "%s: %lld steps%s, best dev at step %lld, %.1f s (training %.1f s, evaluation %.1f s)\n",
        r.task.c_str(), (long long)r.steps, r.stopped_early ? " (stopped early)" : "",
        (long long)r.best_step, r.seconds, r.train_seconds, r.eval_seconds);
    print_metrics("dev", r.dev);
    print_metrics("test", r.test);
    print_metrics("majority", r.majority_baseline);
  });
}

}  // namespace ecmoe::cli
