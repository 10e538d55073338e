// `ecmoe bench train`: training throughput of a config (tokens/s, the median step after a
// warm-up) and model-FLOPs utilisation against a peak (train/flops.h has the formula). Reads the
// config's data when it is prepared, else uses random tokens, so it runs on a fresh checkout.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"
#include "data/manifest.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "train/batches.h"
#include "train/config_overrides.h"
#include "train/flops.h"
#include "train/metrics.h"

namespace ecmoe::cli {

namespace {

struct BenchTrainArgs {
  std::string config = "small";
  std::vector<std::string> sets;
  int steps = 10;
  int warmup = 2;
  double peak_gflops = 340;  // an FMA loop on this project's 2-core reference machine
  bool json = false;
};

// Random ordinary tokens, as a stand-in for a data split that has not been prepared.
Batch synthetic_batch(const BatchSpec& spec, int64_t step) {
  const int width = window_width(spec.kind, spec.seq_len);
  std::vector<int32_t> windows(std::size_t(spec.batch_size) * width);
  const Rng rng(spec.data_seed, uint64_t(step));
  for (std::size_t i = 0; i < windows.size(); ++i)
    windows[i] = data::kFirstOrdinaryId +
                 int32_t(rng.below(i, uint64_t(spec.vocab_size - data::kFirstOrdinaryId)));
  return make_batch(windows, spec, uint64_t(step));
}

void run(const BenchTrainArgs& args) {
  TrainConfig config = load_train_config(args.config, args.sets);
  std::optional<data::TokenDataset> dataset;
  if (std::filesystem::exists(std::filesystem::path(config.data.dir) / data::kManifestFile)) {
    dataset = data::TokenDataset::open(config.data.dir, "train");
    config.model.vocab_size = dataset->vocab_size();
  } else if (config.model.vocab_size == 0) {
    config.model.vocab_size = 8000;  // what `ecmoe prepare` makes by default
  }
  config.model.validate();
  const BatchSpec spec = batch_spec(config, config.batch_size);
  std::optional<BatchSource> source;
  if (dataset) source = BatchSource::random(*dataset, spec);

  Transformer model(config.model);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, config.seeds.init);
  AdamW adam(model.table(), config.optimizer);
  std::vector<double> seconds;
  for (int s = 0; s < args.warmup + args.steps; ++s) {
    const double t0 = now_seconds();
    const Batch batch = source ? source->get(s) : synthetic_batch(spec, s);
    grads.zero();
    model.forward(params, batch, /*training=*/true, uint64_t(s));
    model.backward(params, grads);
    clip_grad_norm(grads, config.clip_norm);
    adam.step(params, grads, config.schedule.lr_at(s));
    if (s >= args.warmup) seconds.push_back(now_seconds() - t0);
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds.size() % 2
                            ? seconds[seconds.size() / 2]
                            : 0.5 * (seconds[seconds.size() / 2 - 1] + seconds[seconds.size() / 2]);
  const double tokens_per_step = double(config.batch_size) * config.model.seq_len;
  const double tokens_per_second = tokens_per_step / median;
  const double targets_per_token =
      config.model.kind == ModelKind::kEncoder ? double(config.data.mask_prob) : 1.0;
  const double flops_per_token = train_flops_per_token(config.model, targets_per_token);
  const double gflops = flops_per_token * tokens_per_second * 1e-9;

  if (args.json) {
    MetricsJson j;
    j["config"] = args.config;
    j["router"] = router_name(config.model.moe.router);
    j["data"] = dataset ? config.data.dir : "synthetic";
    j["threads"] = thread_count();
    j["tokens_per_step"] = tokens_per_step;
    j["steps"] = args.steps;
    j["warmup"] = args.warmup;
    j["median_step_seconds"] = median;
    j["tokens_per_second"] = tokens_per_second;
    j["parameters"] = model.table().parameter_count();
    j["activated_parameters"] = activated_params(config.model);
    j["flops_per_token"] = flops_per_token;
    j["gflops"] = gflops;
    j["peak_gflops"] = args.peak_gflops;
    j["mfu"] = gflops / args.peak_gflops;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("config %s (%s router), data: %s, %d threads\n", args.config.c_str(),
              router_name(config.model.moe.router).c_str(),
              dataset ? config.data.dir.c_str() : "synthetic", thread_count());
  std::printf("parameters %lld, activated per token %.0f, %.3g training FLOPs per token\n",
              (long long)model.table().parameter_count(), activated_params(config.model),
              flops_per_token);
  std::printf("median step %.3f s over %d steps (after %d warm-up): %.0f tokens/s\n", median,
              args.steps, args.warmup, tokens_per_second);
  std::printf("%.1f GFLOP/s = %.1f%% of %.0f GFLOP/s peak (MFU)\n", gflops,
              100 * gflops / args.peak_gflops, args.peak_gflops);
}

}  // namespace

void register_bench_train(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "train",
      "Training tokens/s and model-FLOPs utilisation (FLOPs per token = 6 x activated "
      "parameters, the output layer only for positions with a target, + 12 x layers x seq_len x "
      "d_model; docs/training.md); random tokens if the data is not prepared");
  auto args = std::make_shared<BenchTrainArgs>();
  cmd->add_option("--config", args->config, "Config name or path (as for `ecmoe train`)")
      ->capture_default_str();
  cmd->add_option("--set", args->sets, "Override a config key (as for `ecmoe train`)")
      ->type_name("KEY=VALUE");
  cmd->add_option("--steps", args->steps, "Timed steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--peak-gflops", args->peak_gflops,
                  "Peak fp32 GFLOP/s the utilisation is relative to (default: an FMA loop on "
                  "2 cores of the reference machine)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace ecmoe::cli
