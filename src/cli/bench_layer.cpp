// `ecmoe bench layer`: forward+backward of one MoE layer, median of several runs, with the share
// of time spent outside the expert GEMMs and the GEMMs' speed beside the library's own.
#include "cli/bench_layer.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/phase_times.h"
#include "core/rng.h"
#include "core/threads.h"
#include "moe/expert_gemm_problems.h"
#include "moe/moe_layer.h"
#include "train/memory_estimate.h"

namespace ecmoe::cli {

namespace {

// Under mpirun: the step time (the slowest rank's median), the time inside the all-to-all calls
// and the bytes each rank sent to other ranks, per token of the rank and per layer call
// (forward + backward), over the timed runs (the counters less `at_warmup`, their values when the
// first timed run began: the first warm-up run also connects the ranks).
void report_parallel_layer_bench(const LayerBenchOptions& o, const dist::Comm& c,
                                 const dist::ExchangeCounters& at_warmup,
                                 const std::vector<double>& total_ms,
                                 const std::vector<double>& fwd_ms,
                                 const std::vector<double>& bwd_ms) {
  const dist::ExchangeCounters& k = c.counters();
  double sums[2] = {(k.seconds - at_warmup.seconds) * 1e3 / o.repeats,
                    double(k.bytes_sent - at_warmup.bytes_sent) / o.repeats / o.tokens};
  c.allreduce_sum(std::span<double>(sums, 2));
  const double ms = c.allreduce_max(median(total_ms));
  const double a2a_ms = sums[0] / c.size(), bytes = sums[1] / c.size();
  if (!c.is_root()) return;
  if (o.json) {
    const nlohmann::json j = {{"router", o.router},
                              {"tokens_per_rank", o.tokens},
                              {"ranks", c.size()},
                              {"d_model", o.d_model},
                              {"d_ff", o.d_ff},
                              {"experts", o.experts},
                              {"global_routing", o.global_routing},
                              {"threads", thread_count()},
                              {"repeats", o.repeats},
                              {"ms", ms},
                              {"forward_ms", median(fwd_ms)},
                              {"backward_ms", median(bwd_ms)},
                              {"all_to_all_ms", a2a_ms},
                              {"bytes_sent_per_token", bytes}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("router %s, %d ranks x %d tokens, d_model %d, d_ff %d, %d experts, %d threads%s\n",
              o.router.c_str(), c.size(), o.tokens, o.d_model, o.d_ff, o.experts, thread_count(),
              o.global_routing ? ", global routing" : "");
  std::printf("forward+backward: %.2f ms (slowest rank's median of %d)\n", ms, o.repeats);
  std::printf("all-to-all:       %.2f ms per forward+backward (%.0f%%), mean over ranks\n", a2a_ms,
              100.0 * a2a_ms / ms);
  std::printf("sent to other ranks: %.0f bytes per token per layer (forward+backward)\n", bytes);
}

}  // namespace

std::string layer_bench_sizes(const LayerBenchOptions& o) {
  return "bench layer (--tokens " + std::to_string(o.tokens) + ", --d-model " +
         std::to_string(o.d_model) + ", --d-ff " + std::to_string(o.d_ff) + ", --experts " +
         std::to_string(o.experts) + ")";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

MoeConfig layer_bench_config(const LayerBenchOptions& o) {
  ECMOE_CHECK(o.tokens > 0 && o.repeats > 0, "bench layer: tokens and repeats must be positive");
  MoeConfig cfg = default_moe_config(parse_router_kind(o.router));
  cfg.d_model = o.d_model;
  cfg.d_ff = o.d_ff;
  cfg.n_experts = o.experts;
  // Training step: the training capacity factor is what the benchmark runs.
  cfg.capacity_factor_train = cfg.capacity_factor_eval = o.capacity_factor;
  cfg.capped.max_experts_per_token = o.cap;
  cfg.group_size = o.group_size;
  cfg.global_routing = o.global_routing;
  cfg.precision = parse_precision(o.precision);
  cfg.validate();
  return cfg;
}

nlohmann::json layer_report_json(const LayerBenchOptions& o, const MoeConfig& cfg,
                                 const LayerTimings& t) {
  return {{"router", o.router},
          {"tokens", o.tokens},
          {"d_model", o.d_model},
          {"d_ff", o.d_ff},
          {"experts", o.experts},
          {"capacity_factor", o.capacity_factor},
          {"precision", precision_name(cfg.precision)},
          {"repeats", o.repeats},
          {"ms", median(t.total_ms)},
          {"ms_min", *std::min_element(t.total_ms.begin(), t.total_ms.end())},
          {"forward_ms", median(t.forward_ms)},
          {"backward_ms", median(t.backward_ms)},
          {"expert_gemm_ms", t.expert_gemm_ms},
          {"expert_gemm_gflops", t.flops / t.expert_gemm_ms * 1e-6},
          {"library_gemm_ms", t.library_gemm_ms},
          {"library_gemm_gflops", t.flops / t.library_gemm_ms * 1e-6}};
}

PhaseSummary summarize_phases(const PhaseTimes& phases, int repeats) {
  PhaseSummary summary;
  for (const auto& [name, seconds] : phases.entries()) {
    const double ms = seconds * 1e3 / repeats;
    summary.ms.emplace_back(name, ms);
    summary.total_ms += ms;
    if (name.rfind("gemm", 0) == 0) summary.gemm_ms += ms;
  }
  return summary;
}

nlohmann::json routing_report_fields(const RoutingStats& stats) {
  nlohmann::json j = {{"max_experts_per_token", stats.max_experts_per_token}};
  if (stats.capped())
    j.update({{"solver_iterations", stats.solver_iterations},
              {"solver_residual", stats.solver_residual},
              {"rounding_changes", stats.rounding_changes}});
  return j;
}

nlohmann::json PhaseSummary::report_fields() const {
  nlohmann::json phases = nlohmann::json::object();
  for (const auto& [name, value] : ms) phases[name] = value;
  return {{"phases_ms", phases},
          {"layer_gemm_ms", gemm_ms},
          {"layer_outside_gemm_ms", total_ms - gemm_ms}};
}

void PhaseSummary::print(const char* how_timed, int decimals) const {
  std::printf("phases (%s; gemm: %.*f, the rest: %.*f):\n", how_timed, decimals, gemm_ms, decimals,
              total_ms - gemm_ms);
  for (const auto& [name, value] : ms)
    std::printf("  %-24s %8.*f\n", name.c_str(), decimals, value);
}

namespace {

void run_layer_bench(const LayerBenchOptions& o) {
  if (o.device == "cuda") {
    run_layer_bench_cuda(o);
    return;
  }
  const MoeConfig cfg = layer_bench_config(o);
  check_moe_layer_memory(cfg, o.tokens, layer_bench_sizes(o));

  const dist::Comm& c = comm();  // under mpirun: --tokens per rank, experts sharded
  TensorTable table;
  declare_moe_params(table, "", cfg, expert_shard(cfg, &c));
  FlatBuffer params(table), grads(table);
  init_moe_params(params, "", cfg, 1, 0.5f);
  std::vector<float> x(size_t(o.tokens) * o.d_model), dy(x.size()), y(x.size()), dx(x.size());
  const Rng rng(2, 3);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = rng.normal(i), dy[i] = 1e-3f * rng.normal(i + x.size());
  std::vector<int32_t> ids(o.tokens);
  for (int t = 0; t < o.tokens; ++t) ids[t] = int32_t(rng.below(t, 8000));
  if (c.parallel()) {
    const Rng mine(2, 4 + uint64_t(c.rank()));  // each rank its own tokens
    for (size_t i = 0; i < x.size(); ++i) x[i] = mine.normal(i);
  }

  MoeLayer layer(cfg);
  layer.set_comm(&c);
  const MoeWeights w = moe_weights(params, "", cfg);
  MoeGrads g = moe_grads(grads, "", cfg);
  const MoeInput in{x.data(), ids.data(), o.tokens, true, 0};
  MoeOutput out;
  PhaseTimes phases;  // the timed runs' breakdown (the warm-up runs' is cleared)
  if (!c.parallel()) layer.set_phase_times(&phases);
  int run = 0;
  dist::ExchangeCounters at_warmup;
  // The CPU's work is done when a call returns: nothing to wait for between the halves.
  const ForwardBackwardMs ms = time_forward_backward(
      o.warmup, o.repeats,
      [&] {
        if (++run == o.warmup + 1) {
          phases.clear();
          at_warmup = c.counters();
        }
        out = layer.forward(w, in, y.data());
      },
      [&] { layer.backward(w, g, dy.data(), dx.data()); }, [] {});
  const std::vector<double>&total_ms = ms.total, &fwd_ms = ms.forward, &bwd_ms = ms.backward;

  if (c.parallel()) {
    report_parallel_layer_bench(o, c, at_warmup, total_ms, fwd_ms, bwd_ms);
    return;
  }
  // The same expert GEMMs alone, through our tiling and through plain library calls.
  ExpertGemmWorkspace ws;
  const auto problems = make_expert_gemms(layer.plan(), o.d_model, o.d_ff, ws, cfg.precision);
  const double flops = expert_gemm_flops(layer.plan(), o.d_model, o.d_ff);
  const auto gemm_ms = time_runs(o.warmup, o.repeats, [&] { gemm_batch(problems); });
  const auto library_ms = time_runs(o.warmup, o.repeats, [&] {
    for (const auto& p : problems) gemm_library_direct(p);
  });

  const double t = median(total_ms), tg = median(gemm_ms), tl = median(library_ms);
  const double outside = std::max(0.0, (t - tg) / t);
  const PhaseSummary phase_summary = summarize_phases(phases, o.repeats);
  if (o.json) {
    nlohmann::json j = layer_report_json(o, cfg, {total_ms, fwd_ms, bwd_ms, tg, tl, flops});
    j.update({{"bf16_kernel", bf16_native() ? "native" : "fallback"},
              {"threads", thread_count()},
              {"outside_gemm_share", outside},
              {"slots", layer.plan().slot_count()}});
    j.update(routing_report_fields(out.stats));
    j.update(phase_summary.report_fields());
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf(
      "router %s, %d tokens, d_model %d, d_ff %d, %d experts, capacity factor %g, %s%s, %d "
      "threads\n",
      o.router.c_str(), o.tokens, o.d_model, o.d_ff, o.experts, o.capacity_factor,
      precision_name(cfg.precision).c_str(),
      cfg.precision == Precision::kFp32 ? ""
      : bf16_native()                   ? " (native bf16)"
                                        : " (bf16 fallback: fp32 kernel)",
      thread_count());
  std::printf("forward+backward: %.2f ms median of %d (forward %.2f, backward %.2f)\n", t,
              o.repeats, median(fwd_ms), median(bwd_ms));
  std::printf(
      "expert GEMMs:     %.2f ms, %.1f GFLOP/s (library alone: %.1f GFLOP/s; ours %.0f%%)\n", tg,
      flops / tg * 1e-6, flops / tl * 1e-6, 100.0 * tl / tg);
  std::printf("outside expert GEMMs (router, routing, dispatch, GELU, combine): %.1f%%\n",
              100.0 * outside);
  phase_summary.print("mean ms per forward+backward", 2);
}

}  // namespace

void register_bench_layer(CLI::App& bench) {
  static LayerBenchOptions o;
  auto* cmd = bench.add_subcommand("layer", "Time one MoE layer's forward+backward");
  cmd->add_option("--router", o.router,
                  "expert_choice, expert_choice_capped, top1, top2, dense, hash")
      ->capture_default_str();
  cmd->add_option("--tokens", o.tokens, "Tokens in the batch (one routing group)")
      ->capture_default_str();
  cmd->add_option("--d-model", o.d_model)->capture_default_str();
  cmd->add_option("--d-ff", o.d_ff)->capture_default_str();
  cmd->add_option("--experts", o.experts)->capture_default_str();
  cmd->add_option("--capacity-factor", o.capacity_factor)->capture_default_str();
  cmd->add_option("--cap", o.cap, "Experts per token cap (expert_choice_capped)")
      ->capture_default_str();
  cmd->add_option("--group-size", o.group_size, "Tokens per routing group (0 = all)")
      ->capture_default_str();
  cmd->add_flag("--global-routing", o.global_routing,
                "Under mpirun: route over all ranks' tokens (model.moe.global_routing)");
  cmd->add_option(
         "--precision", o.precision,
         "GEMM precision: fp32, bf16 (bf16 operands, fp32 accumulation), or auto (bf16 where "
         "this CPU has bf16 instructions, else fp32)")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  cmd->add_option("--device", o.device,
                  "cpu, or cuda (the CUDA backend: an ecmoe built with -DECMOE_CUDA=ON and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--repeats", o.repeats, "Timed runs (the median is reported)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup)->capture_default_str();
  cmd->add_option("--square-gemm", o.square_gemm,
                  "--device cuda: the roofline's reference, cuBLAS on one N x N x N product")
      ->check(CLI::Range(1, 32768))
      ->capture_default_str();
  cmd->add_option("--copy-mb", o.copy_mb,
                  "--device cuda: the roofline's device-to-device copy, in MiB")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->add_flag("--json", o.json, "One JSON object on stdout");
  cmd->callback([] { run_layer_bench(o); });
}

}  // namespace ecmoe::cli
