// `ecmoe finetune`: fine-tune a pre-trained encoder checkpoint on a classification task and print
// dev and test accuracy (docs/finetune.md).
#include "finetune/finetune.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "finetune/builtin_tasks.h"
#include "train/config_overrides.h"

namespace ecmoe::cli {

namespace {

struct FinetuneArgs {
  std::string checkpoint;
  std::string task;
  std::string train, dev, test;
  std::string text_column, text_pair_column, label_column;
  double dev_fraction = 0;
  std::vector<std::string> sets;
  std::string out;
  std::string precision;
  uint64_t seed = 0;
  bool seed_given = false;
  bool json = false;
  std::string device = "cpu";
};

std::string keys_help() {
  std::string text = "Config keys (--set KEY=VALUE; defaults shown):\n";
  for (const auto& [key, value] :
       flatten_config(finetune::finetune_config_to_json(finetune::FinetuneConfig{})))
    text += "  " + key + " = " + value.dump() + "\n";
  text += "Tasks: ";
  for (const auto& name : finetune::builtin_task_names()) text += name + ", ";
  text +=
      "glue:NAME:DIR with NAME one of sst2, cola, mrpc, qqp, mnli, rte, or your own TSV "
      "files: tsv:DIR (DIR/train.tsv, and dev.tsv, test.tsv if present) or --train FILE "
      "[--dev FILE] [--test FILE]\n"
      "With --out DIR: DIR/model.safetensors is the fine-tuned model for `ecmoe predict`, "
      "DIR/predictions.tsv the test (or dev) predictions, DIR/result.json the figures "
      "(docs/finetune.md)\n";
  return text;
}

void print_metrics(const char* split, const finetune::ClassMetrics& m, const std::string& source) {
  std::printf("%-9s accuracy %.4f  macro-F1 %.4f  (%lld examples%s)\n", split, m.accuracy,
              m.macro_f1, (long long)m.examples, source.empty() ? "" : ("; " + source).c_str());
}

}  // namespace

void register_finetune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "finetune", "Fine-tune a pre-trained encoder with a classification head on a task");
  auto args = std::make_shared<FinetuneArgs>();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint written by `ecmoe train`")
      ->required();
  auto* task = cmd->add_option("--task", args->task,
                               "polarity, reviews, spam, supersense, glue:NAME:DIR (GLUE TSV "
                               "files), or tsv:DIR (your own TSV files)");
  auto* train = cmd->add_option("--train", args->train,
                                "Your own training TSV file (header line; task tsv; instead of "
                                "--task)");
  auto* dev = cmd->add_option("--dev", args->dev,
                              "Dev TSV file (with --train; default: dev_fraction of --train)");
  auto* test = cmd->add_option("--test", args->test,
                               "Test TSV file (with --train; default: none, dev only)");
  auto* text_column = cmd->add_option("--text-column", args->text_column,
                                      "TSV tasks: the text column (default: text)");
  auto* pair_column = cmd->add_option("--text-pair-column", args->text_pair_column,
                                      "TSV tasks: the pair's second text (default: none)");
  auto* label_column = cmd->add_option("--label-column", args->label_column,
                                       "TSV tasks: the label column (default: label)");
  auto* dev_fraction =
      cmd->add_option("--dev-fraction", args->dev_fraction,
                      "TSV and GLUE tasks without a dev file: share of train held out as dev "
                      "(default 0.1)");
  cmd->add_option("--seed", args->seed, "Seed: head init, batch order, router jitter")
      ->each([args](const std::string&) { args->seed_given = true; });
  auto* precision =
      cmd->add_option("--precision", args->precision,
                      "The encoder's GEMMs: fp32, bf16 operands with fp32 accumulation, or auto "
                      "(bf16 where this CPU has bf16 instructions); config key precision; "
                      "default fp32, whatever the checkpoint was trained with")
          ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  cmd->add_option("--set", args->sets, "Override a config key (repeatable)")
      ->type_name("KEY=VALUE");
  auto* out =
      cmd->add_option("--out", args->out,
                      "Write the fine-tuned model (model.safetensors, for `ecmoe predict`), "
                      "predictions.tsv, config.json and result.json into this folder");
  cmd->add_option("--device", args->device,
                  "Where the encoder fine-tunes and evaluates: cpu, or cuda (an NVIDIA GPU; "
                  "needs a build with -DECMOE_CUDA=ON, one process, docs/cuda.md); the head "
                  "runs on the CPU. The same files either way")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the result as JSON instead of a summary");
  cmd->footer(keys_help());
  cmd->callback([=] {
    require_one_process("finetune");
    ECMOE_CHECK(task->count() + train->count() == 1,
                "give the task with --task NAME, or your own TSV files with --train FILE, not ",
                task->count() ? "both" : "neither");
    ECMOE_CHECK(train->count() || (dev->count() + test->count() == 0),
                "--dev and --test go with --train (with --task tsv:DIR they are DIR/dev.tsv and "
                "DIR/test.tsv)");
    ECMOE_CHECK(out->count() == 0 || !args->out.empty(),
                "--out is empty: give the folder to write into");
    ConfigJson json = finetune::finetune_config_to_json(finetune::FinetuneConfig{});
    apply_overrides(json, args->sets);
    json["checkpoint"] = args->checkpoint;
    json["task"] = train->count() ? "tsv" : args->task;
    for (const auto& [option, key, value] :
         {std::tuple{train, "train_file", &args->train}, std::tuple{dev, "dev_file", &args->dev},
          std::tuple{test, "test_file", &args->test},
          std::tuple{text_column, "text_column", &args->text_column},
          std::tuple{pair_column, "text_pair_column", &args->text_pair_column},
          std::tuple{label_column, "label_column", &args->label_column}})
      if (option->count()) json[key] = *value;
    if (dev_fraction->count()) {
      const std::string t = json["task"].get<std::string>();
      ECMOE_CHECK(t == "tsv" || t.rfind("tsv:", 0) == 0 || t.rfind("glue:", 0) == 0,
                  "--dev-fraction applies to tsv and glue tasks; task ", t, " has fixed splits");
      json["dev_fraction"] = args->dev_fraction;
    }
    if (args->seed_given) json["seed"] = args->seed;
    if (precision->count()) json["precision"] = args->precision;
    if (!args->out.empty()) json["out"] = args->out;
    const finetune::FinetuneConfig config = finetune::finetune_config_from_json(json);
    const TrainDevice* device = train_device(args->device);
    const finetune::FinetuneResult r = finetune::run_finetune(config, {.device = device});
    if (args->json) {
      std::printf("%s\n", finetune::result_to_json(r).dump(2).c_str());
      return;
    }
    std::printf(
        "%s: %lld steps%s, best dev at step %lld, %.1f s (training %.1f s, evaluation %.1f s)\n",
        r.task.c_str(), (long long)r.steps, r.stopped_early ? " (stopped early)" : "",
        (long long)r.best_step, r.seconds, r.train_seconds, r.eval_seconds);
    print_metrics("dev", r.dev, r.sources.dev);
    if (r.has_test) print_metrics("test", r.test, r.sources.test);
    print_metrics("majority", r.majority_baseline,
                  std::string("always the most frequent training label, on ") +
                      (r.has_test ? "test" : "dev"));
    if (!r.model_file.empty())
      std::printf("model     %s (use: ecmoe predict --checkpoint %s --text \"...\")\n",
                  r.model_file.c_str(), r.model_file.c_str());
  });
}

}  // namespace ecmoe::cli
