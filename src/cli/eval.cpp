// `ecmoe eval`: loss, perplexity and routing statistics of a checkpoint on fixed windows of a
// data split (the windows validation uses during training, for --split val), or of raw text files
// (--text) encoded with the checkpoint's tokenizer: out-of-domain evaluation in one command.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/held_out.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "data/token_dataset.h"
#include "model/transformer.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"
#include "train/leakage.h"
#include "train/metrics.h"
#include "train/report.h"
#include "train/train_device.h"

namespace ecmoe::cli {

namespace {
struct EvalArgs {
  std::string checkpoint;
  HeldOutArgs held_out;
  TextArgs text;
  bool json = false;
  std::string router;  // replaces the checkpoint's router (expert_choice <-> expert_threshold)
  bool leakage = false;
  int leakage_cuts = 4;
  std::string device = "cpu";
};

MetricsJson leakage_json(const LeakageResult& r) {
  MetricsJson j;
  j["max_abs_change"] = r.max_abs_change;
  j["mean_abs_change"] = r.mean_abs_change;
  j["positions"] = r.positions;
  j["changed_positions"] = r.changed_positions;
  j["base_loss"] = r.base_loss;
  j["loss_change"] = r.loss_change;
  j["batches"] = r.batches;
  j["cuts"] = r.cuts;
  j["exact"] = r.exact();
  return j;
}

std::string format_leakage(const LeakageResult& r) {
  char line[512];
  std::snprintf(line, sizeof line,
                "leakage (future tokens replaced, %lld positions compared over %d batches x %d "
                "cuts): max |dlogp| %.3g, mean %.3g, changed %lld (%s); loss there %.4f, "
                "change %+.4g\n",
                (long long)r.positions, r.batches, r.cuts, r.max_abs_change, r.mean_abs_change,
                (long long)r.changed_positions, r.exact() ? "bitwise 0: causal" : "LEAKS",
                r.base_loss, r.loss_change);
  return line;
}
}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "Evaluate a checkpoint on a data split or raw text: loss, perplexity, routing");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Checkpoint file (<out>/checkpoint.safetensors)")
      ->required();
  add_held_out_options(cmd, args->held_out);
  auto* text = cmd->add_option("--text", args->text.files,
                               "Score these UTF-8 text files (or folders) instead of a data split: "
                               "cut into documents and encoded as `prepare --input` would, with "
                               "the checkpoint's tokenizer; by default every token is covered")
                   ->excludes("--data")
                   ->excludes("--split");
  cmd->add_option("--tokenizer", args->text.tokenizer,
                  "--text: the checkpoint's tokenizer model, when the recorded one is not found")
      ->needs(text);
  cmd->get_option("--batches")
      ->description(
          "Batches of fixed windows (default: the run's eval.batches, else 8; with --text, "
          "enough to cover every token)");
  cmd->add_option("--include", args->text.include,
                  "--text: glob (fnmatch) choosing the files of folders, as for prepare")
      ->needs(text);
  cmd->add_option("--doc-bytes", args->text.document_bytes,
                  "--text: document size, as for prepare (documents end with EOS)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(text);
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->add_option("--router", args->router,
                  "Route with this router instead of the checkpoint's: expert_threshold for an "
                  "expert-choice checkpoint (its cutoffs), or expert_choice for a threshold one");
  cmd->add_flag("--leakage", args->leakage,
                "Decoders: also measure how much log p(target) at positions <= t changes when "
                "the tokens after t are replaced (0 for a causal router)");
  cmd->add_option("--leakage-cuts", args->leakage_cuts, "Cut points per batch for --leakage")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--device", args->device,
                  "Where to evaluate (--leakage too): cpu, or cuda (one process; docs/cuda.md)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([args] {
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    const TrainConfig& config = checkpoint.config();
    ECMOE_CHECK(!args->leakage || config.model.kind == ModelKind::kDecoder,
                "eval --leakage: needs a decoder checkpoint (an encoder reads the whole sequence "
                "by design)");
    const bool from_text = !args->text.files.empty();
    const TrainDevice* device = train_device(args->device);
    ECMOE_CHECK(!device || !comm().parallel(), "eval --device ", args->device,
                " runs in one process (not under mpirun)");
    const HeldOut held_out =
        from_text ? open_held_out_text(checkpoint, args->held_out, args->text, device)
                  : open_held_out(checkpoint, args->held_out, device);

    ModelConfig model_config = config.model;
    if (!args->router.empty()) {
      model_config.moe.router =
          evaluation_router(model_config.moe.router, args->router, "eval --router");
    }
    // Leakage compares whole batches in one process; every rank gets the same error.
    ECMOE_CHECK(!args->leakage || !comm().parallel(),
                "eval --leakage runs in one process (not under mpirun)");
    Transformer model(model_config, &comm());
    FlatBuffer params(model.table());
    checkpoint.load_params(params);
    FlatBuffer router_state(model.state_table());
    model.init_state(router_state);
    checkpoint.load_router_state(router_state);
    const int batches = held_out.batches;
    check_batch_splits(held_out.spec.batch_size, comm(), "--batch-size");
    const BatchSource source = held_out.source();
    EvalResult r;
    LeakageResult leak;
    const LeakageOptions leakage{batches, args->leakage_cuts, 1, 0};
    if (device) {
      const nn::Buffer<float> on_device = place_on_device(model, *device, params);
      r = evaluate_on_backend(model, on_device.data(), source, batches, &router_state);
      if (args->leakage)
        leak = measure_leakage_on_backend(model, on_device.data(), source, leakage, &router_state);
    } else {
      r = evaluate(model, params, source, batches, &router_state, &comm());
      if (args->leakage) leak = measure_leakage(model, params, source, leakage, &router_state);
    }
    if (!comm().is_root()) return;

    if (args->json) {
      MetricsJson j;
      j["checkpoint"] = args->checkpoint;
      j["step"] = checkpoint.step();
      j["split"] = from_text ? std::string("text") : args->held_out.split;
      if (from_text) {
        j["text"] = args->text.files;
        j["documents"] = held_out.dataset.documents();
        j["tokens"] = held_out.dataset.size();
      }
      j["model"] = model_kind_name(config.model.kind);
      j["router"] = router_name(model_config.moe.router);
      j["device"] = args->device;
      j["trained_router"] = router_name(config.model.moe.router);
      j.update(eval_json(model_config, r));
      if (args->leakage) j["leakage"] = leakage_json(leak);
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::string what = args->held_out.split + " split of " + held_out.dir;
      if (from_text)
        what = "text of " + std::to_string(args->text.files.size()) + " input" +
               (args->text.files.size() == 1 ? "" : "s") + " (" +
               std::to_string(held_out.dataset.documents()) + " documents, " +
               std::to_string(held_out.dataset.size()) + " tokens)";
      std::printf("%s at step %lld, %s:\n%s", args->checkpoint.c_str(),
                  (long long)checkpoint.step(), what.c_str(),
                  format_eval_report(model_config, r).c_str());
      if (args->leakage) std::printf("%s", format_leakage(leak).c_str());
    }
  });
}

}  // namespace ecmoe::cli
