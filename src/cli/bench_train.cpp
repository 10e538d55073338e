// `ecmoe bench train`: training throughput of a config (tokens/s, the median step after a
// warm-up) and model-FLOPs utilisation against a peak (train/flops.h has the formula). Reads the
// config's data when it is prepared, else uses random tokens, so it runs on a fresh checkout.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/phase_times.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"
#include "data/manifest.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "nn/attention.h"
#include "nn/timed_backend.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"
#include "train/batches.h"
#include "train/config_overrides.h"
#include "train/data_parallel.h"
#include "train/flops.h"
#include "train/memory_estimate.h"
#include "train/metrics.h"
#include "train/step_profile.h"

namespace ecmoe::cli {

namespace {

struct BenchTrainArgs {
  std::string config = "small";
  std::vector<std::string> sets;
  int steps = 10;
  int warmup = 2;
  double peak_gflops = 340;  // an FMA loop on this project's 2-core reference machine
  bool json = false;
  std::string device = "cpu";
  int profile_steps = 3;
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
  // --device: the trainer's device path (train/train_device.h), the same calls as train()'s.
  const TrainDevice* device = train_device(args.device);
  // Bytes free on the device before the model is placed there (0: not measured).
  const double free_at_start = device && device->free_memory ? device->free_memory() : 0;
  check_training_memory(config, device);
  const MemoryEstimate memory = estimate_memory(config, true, device && device->free_memory);
  const BatchSpec spec = batch_spec(config, config.batch_size);
  std::optional<BatchSource> source;
  if (dataset) source = BatchSource::random(*dataset, spec);

  // Under mpirun: config.batch_size is the global batch, experts sharded (as in `ecmoe train`).
  const dist::Comm& c = comm();
  check_batch_splits(config.batch_size, c, "batch_size", config.grad_accum);
  Transformer model(config.model, &c);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, config.seeds.init);
  AdamW adam(model.table(), config.optimizer);
  std::unique_ptr<OptimizerDevice> on_device;
  if (device) {
    ECMOE_CHECK(!c.parallel(), "bench train --device ", device->name, " runs in one process");
    use_device(model, *device);
    on_device = device->optimizer(model.table(), config.optimizer);
    on_device->load(params, adam);
  }
  const double free_after_load = free_at_start > 0 ? device->free_memory() : 0;
  std::vector<double> seconds;
  dist::ExchangeCounters at_warmup;
  double allreduce_seconds = 0, wait_seconds = 0;
  // One training step; `times` (profiling) gets the optimizer's time, `timed` (after the warm-up)
  // adds the gradient all-reduce and the wait for the slowest rank before it to their sums.
  const auto train_step = [&](int s, PhaseTimes* times, bool timed) {
    const std::vector<Batch> parts =
        step_parts(source ? source->get(s) : synthetic_batch(spec, s), c, config.grad_accum);
    if (on_device) {
      // As the trainer's step: everything up to the gradient norm queued before the one wait
      // (one more per earlier micro-batch).
      on_device->zero_grads();
      const auto forward_backward = [&](const Batch& part) {
        Transformer::PendingForward pending = model.start_forward_on_backend(
            on_device->params(), nullptr, part, /*training=*/true, uint64_t(s));
        model.backward_on_backend(on_device->params(), on_device->grads());
        return pending;
      };
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        Transformer::PendingForward pending = forward_backward(parts[i]);
        model.finish_forward(pending);
      }
      Transformer::PendingForward pending = forward_backward(parts.back());
      if (times) on_device->wait();  // the optimizer's time alone
      const double t0 = now_seconds();
      on_device->start_clip_grad_norm(config.clip_norm);
      on_device->finish_clip_grad_norm();
      model.finish_forward(pending);
      on_device->adamw_step(config.schedule.lr_at(s));
      on_device->wait();
      if (times) times->add("optimizer", now_seconds() - t0);
      return;
    }
    grads.zero();
    for (const Batch& part : parts) {
      model.forward(params, part, /*training=*/true, uint64_t(s));
      model.backward(params, grads);
    }
    // The barrier separates waiting for the slowest rank from the all-reduce itself.
    const double t1 = now_seconds();
    c.barrier();
    const double t2 = now_seconds();
    reduce_gradients(grads, c);
    if (timed) {
      wait_seconds += t2 - t1;
      allreduce_seconds += now_seconds() - t2;
    }
    const double t0 = now_seconds();
    clip_grad_norm(grads, config.clip_norm, &c);
    adam.step(params, grads, config.schedule.lr_at(s));
    if (times) times->add("optimizer", now_seconds() - t0);
  };
  for (int s = 0; s < args.warmup + args.steps; ++s) {
    if (s == args.warmup) at_warmup = c.counters();
    const double t0 = now_seconds();
    train_step(s, nullptr, s >= args.warmup);
    if (s >= args.warmup) seconds.push_back(now_seconds() - t0);
  }
  // Device memory now: the training state and every buffer the steps grew (they never shrink).
  const double free_after_steps = free_at_start > 0 ? device->free_memory() : 0;
  // The profile: more steps, each op timed (one process).
  std::optional<StepProfile> profile;
  if (args.profile_steps > 0 && !c.parallel()) {
    PhaseTimes times;
    nn::Backend& plain = model.nn_backend();
    nn::TimedBackend timed(plain, times);
    model.set_nn_backend(timed);
    model.set_moe_phase_times(&times);
    const int first = args.warmup + args.steps;
    train_step(first, nullptr, false);  // buffers re-made for the timed backend, untimed
    times.clear();
    const double t0 = now_seconds();
    for (int s = first + 1; s <= first + args.profile_steps; ++s) train_step(s, &times, false);
    profile = summarize_profile(times, now_seconds() - t0, args.profile_steps);
    model.set_moe_phase_times(nullptr);
    model.set_nn_backend(plain);
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = c.allreduce_max(
      seconds.size() % 2 ? seconds[seconds.size() / 2]
                         : 0.5 * (seconds[seconds.size() / 2 - 1] + seconds[seconds.size() / 2]));
  // Per step, mean over ranks: time in the expert all-to-alls, in the gradient all-reduce and
  // waiting for the slowest rank before it;
  // bytes a rank sent to others per token of its slice and per MoE layer (forward + backward).
  int moe_layers = 0;
  for (int l = 0; l < config.model.n_layers; ++l)
    moe_layers += config.model.ffn_config(l).router != RouterKind::kDense;
  const double local_tokens = double(config.batch_size / c.size()) * config.model.seq_len;
  double comm_sums[4] = {(c.counters().seconds - at_warmup.seconds) / args.steps,
                         allreduce_seconds / args.steps,
                         double(c.counters().bytes_sent - at_warmup.bytes_sent) / args.steps /
                             local_tokens / std::max(1, moe_layers)};
  comm_sums[3] = wait_seconds / args.steps;
  c.allreduce_sum(std::span<double>(comm_sums, 4));
  for (double& v : comm_sums) v /= c.size();
  // Parameters, gradients and the two AdamW moments: four buffers of this rank's table.
  const double training_state_bytes = 4.0 * double(model.table().total_floats()) * sizeof(float);
  if (!c.is_root()) return;
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
    j["precision"] = precision_name(config.model.precision);
    j["device"] = args.device;
    nn::AttentionConfig attention{.n_heads = config.model.n_heads,
                                  .head_dim = config.model.head_dim(),
                                  .precision = config.model.precision};
    j["attention"] = attention_path(args.device, attention);  // flash, cublas or cpu
    j["bf16_kernel"] = bf16_native() ? "native" : "fallback";
    j["data"] = dataset ? config.data.dir : "synthetic";
    j["threads"] = thread_count();
    j["tokens_per_step"] = tokens_per_step;
    j["grad_accum"] = config.grad_accum;
    j["steps"] = args.steps;
    j["warmup"] = args.warmup;
    j["median_step_seconds"] = median;
    j["tokens_per_second"] = tokens_per_second;
    j["parameters"] = model.table().model_parameter_count();
    j["parameters_on_rank"] = model.table().parameter_count();
    j["training_state_bytes_on_rank"] = training_state_bytes;
    j["activated_parameters"] = activated_params(config.model);
    j["memory_estimate_bytes"] = {{"parameters", memory.parameters},
                                  {"gradients", memory.gradients},
                                  {"optimizer", memory.optimizer},
                                  {"activations", memory.activations},
                                  {"total", memory.total()}};
    j["flops_per_token"] = flops_per_token;
    j["gflops"] = gflops;
    j["peak_gflops"] = args.peak_gflops;
    j["mfu"] = gflops / args.peak_gflops;
    j["ranks"] = c.size();
    j["all_to_all_seconds"] = comm_sums[0];
    j["allreduce_seconds"] = comm_sums[1];
    j["bytes_sent_per_token_per_layer"] = comm_sums[2];
    j["wait_before_allreduce_seconds"] = comm_sums[3];
    if (free_at_start > 0)
      j["device_memory_bytes"] = {{"training_state", free_at_start - free_after_load},
                                  {"activations_and_scratch", free_after_load - free_after_steps},
                                  {"total", free_at_start - free_after_steps},
                                  {"free_at_start", free_at_start}};
    if (profile) {
      MetricsJson classes, ops;
      for (const auto& [name, sec] : profile->classes) classes[name] = sec;
      for (const auto& [name, sec] : profile->ops) ops[name] = sec;
      j["profile"] = {{"steps", profile->steps},
                      {"step_seconds", profile->step_seconds},
                      {"seconds_per_step_by_class", classes},
                      {"seconds_per_step_by_op", ops}};
    }
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("config %s (%s router, %s%s), data: %s, %d threads\n", args.config.c_str(),
              router_name(config.model.moe.router).c_str(),
              precision_name(config.model.precision).c_str(),
              config.model.precision == Precision::kFp32 ? ""
              : bf16_native()                            ? " native"
                                                         : " fallback",
              dataset ? config.data.dir.c_str() : "synthetic", thread_count());
  if (config.grad_accum > 1)
    std::printf("gradient accumulation: %d micro-batches of %d sequences a step\n",
                config.grad_accum, config.batch_size / (c.size() * config.grad_accum));
  std::printf("parameters %lld, activated per token %.0f, %.3g training FLOPs per token\n",
              (long long)model.table().model_parameter_count(), activated_params(config.model),
              flops_per_token);
  if (c.parallel())
    std::printf(
        "on each rank: %lld parameters, %.1f MB of parameters, gradients and AdamW moments\n",
        (long long)model.table().parameter_count(), training_state_bytes / 1e6);
  std::printf("estimated memory %s (%s of parameters, gradients and AdamW moments)\n",
              format_bytes(memory.total()).c_str(),
              format_bytes(memory.parameters + memory.gradients + memory.optimizer).c_str());
  std::printf("median step %.3f s over %d steps (after %d warm-up): %.0f tokens/s\n", median,
              args.steps, args.warmup, tokens_per_second);
  std::printf("%.1f GFLOP/s = %.1f%% of %.0f GFLOP/s peak (MFU)\n", gflops,
              100 * gflops / args.peak_gflops, args.peak_gflops);
  if (free_at_start > 0)
    std::printf(
        "%s memory used: %s (parameters, gradients and AdamW moments %s; activations and scratch "
        "%s), of %s free at the start\n",
        device->name.c_str(), format_bytes(free_at_start - free_after_steps).c_str(),
        format_bytes(free_at_start - free_after_load).c_str(),
        format_bytes(free_after_load - free_after_steps).c_str(),
        format_bytes(free_at_start).c_str());
  if (profile) {
    std::printf("profile over %d more steps, each op timed alone: %.3f s a step\n", profile->steps,
                profile->step_seconds);
    for (const auto& [name, sec] : profile->classes)
      if (name != "unclassified" || sec > 0)
        std::printf("  %-32s %9.2f ms %5.1f%%\n", name.c_str(), 1e3 * sec,
                    100 * sec / profile->step_seconds);
  }
  if (c.parallel())
    std::printf(
        "%d ranks: per step %.1f ms in expert all-to-all, %.1f ms waiting for the slowest rank "
        "after backward, %.1f ms in the gradient all-reduce; %.0f bytes sent per token per MoE "
        "layer\n",
        c.size(), 1e3 * comm_sums[0], 1e3 * comm_sums[3], 1e3 * comm_sums[1], comm_sums[2]);
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
  cmd->add_option("--device", args->device,
                  "cpu, or cuda (the GPU: ecmoe built with -DECMOE_CUDA=ON; docs/cuda.md)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--profile-steps", args->profile_steps,
                  "Steps after the timed ones with each op timed alone: where a step's time goes "
                  "by class of op (GEMMs, attention, MoE routing/dispatch/combine, elementwise, "
                  "loss, copies, optimizer); 0: none. One process")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace ecmoe::cli
