// `ecmoe bench layer`'s options and the pieces its CPU and CUDA forms share
// (cli/bench_layer.cpp, cli/bench_layer_cuda.cpp).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/phase_times.h"
#include "core/timer.h"
#include "moe/moe_config.h"
#include "moe/routing_stats.h"

namespace ecmoe::cli {

struct LayerBenchOptions {
  std::string router = "expert_choice";
  int tokens = 4096, d_model = 256, d_ff = 1024, experts = 8;
  float capacity_factor = 2.f;
  int cap = 2;
  int group_size = 0;
  bool global_routing = false;  // under mpirun: route over all ranks' tokens
  std::string precision = "fp32";
  std::string device = "cpu";
  int repeats = 10, warmup = 2;
  // --device cuda's roofline: cuBLAS on one square_gemm³ product, a copy of copy_mb MiB.
  int square_gemm = 4096, copy_mb = 1024;
  bool json = false;
};

// The layer's config from the options (validated); throws on bad values.
MoeConfig layer_bench_config(const LayerBenchOptions& o);
// "bench layer (--tokens 4096, --d-model 256, --d-ff 1024, --experts 8)": the sizes, for errors.
std::string layer_bench_sizes(const LayerBenchOptions& o);
double median(std::vector<double> v);

// f() `warmup` times, then `repeats` timed runs: their wall times in ms.
template <typename F>
std::vector<double> time_runs(int warmup, int repeats, F f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now_seconds();
    f();
    ms.push_back((now_seconds() - t0) * 1e3);
  }
  return ms;
}

// forward() then backward(), sync() after each (a device's work done, so that each is timed
// whole): `warmup` untimed rounds, then `repeats` timed ones, the wall times in ms of each round
// and of its two halves.
struct ForwardBackwardMs {
  std::vector<double> total, forward, backward;
};
template <typename Forward, typename Backward, typename Sync>
ForwardBackwardMs time_forward_backward(int warmup, int repeats, Forward forward, Backward backward,
                                        Sync sync) {
  ForwardBackwardMs ms;
  int round = 0;
  ms.total = time_runs(warmup, repeats, [&] {
    const double t0 = now_seconds();
    forward();
    sync();
    const double t1 = now_seconds();
    backward();
    sync();
    if (round++ < warmup) return;
    ms.forward.push_back((t1 - t0) * 1e3);
    ms.backward.push_back((now_seconds() - t1) * 1e3);
  });
  return ms;
}

// The report's fields both devices share: the shape, the precision, the medians of the timed
// runs, and the expert GEMMs alone (ours) beside the library's plain calls of the same FLOPs.
struct LayerTimings {
  std::vector<double> total_ms, forward_ms, backward_ms;
  double expert_gemm_ms = 0, library_gemm_ms = 0, flops = 0;
};
nlohmann::json layer_report_json(const LayerBenchOptions& o, const MoeConfig& cfg,
                                 const LayerTimings& t);

// What the routing of a forward says beside its time: the most experts a token got and, for
// capped expert choice, the solver's sweeps and residual (they decide its cost).
nlohmann::json routing_report_fields(const RoutingStats& stats);

// The layer's phases, each as mean ms per forward+backward over `repeats` runs; "gemm ..." phases
// are the expert GEMMs (with whatever is fused into their tiles).
struct PhaseSummary {
  std::vector<std::pair<std::string, double>> ms;
  double gemm_ms = 0, total_ms = 0;
  // phases_ms, layer_gemm_ms and layer_outside_gemm_ms, for the JSON report.
  nlohmann::json report_fields() const;
  // A heading line naming how phases were timed, then a line per phase, `decimals` after the point.
  void print(const char* how_timed, int decimals) const;
};
PhaseSummary summarize_phases(const PhaseTimes& phases, int repeats);

// --device cuda (cli/bench_layer_cuda.cpp); without the CUDA backend, a one-line error.
void run_layer_bench_cuda(const LayerBenchOptions& o);

}  // namespace ecmoe::cli
