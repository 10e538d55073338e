// `ecmoe bench layer --device cuda`: the MoE layer's forward+backward on the GPU (the CUDA
// backend, cuda/moe_layer.h), median of the timed runs, with the CPU report's fields plus the
// roofline: the expert GEMMs alone against cuBLAS on a square product (--square-gemm, 4096³), and
// the bytes dispatch and combine move against the device's own copy bandwidth (--copy-mb).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/bench_layer.h"
#include "cli/commands.h"
#include "core/error.h"

#ifdef ECMOE_HAVE_CUDA
#include <nlohmann/json.hpp>

#include "cli/train_device.h"
#include "core/phase_times.h"
#include "core/rng.h"
#include "core/tensor_table.h"
#include "cuda/context.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "cuda/expert_gemm.h"
#include "cuda/moe_layer.h"
#include "moe/expert_gemm_problems.h"
#include "moe/moe_layer.h"
#include "train/memory_estimate.h"
#include "train/train_device.h"
#endif

namespace ecmoe::cli {

#ifndef ECMOE_HAVE_CUDA

void run_layer_bench_cuda(const LayerBenchOptions&) {
  fail(
      "bench layer --device cuda: this ecmoe was built without the CUDA backend (configure "
      "with -DECMOE_CUDA=ON; docs/cuda.md)");
}

#else

namespace {

using cuda::DeviceVec;

// Milliseconds of f(), the device synchronised around it; median of `repeats` after one warm-up.
template <typename F>
double device_ms(const cuda::Context& ctx, int repeats, F f) {
  auto timed = [&] {
    ctx.synchronize();
    f();
    ctx.synchronize();
  };
  return median(time_runs(1, repeats, timed));
}

struct GemmRoofline {
  double expert_gemm_ms = 0;  // the layer's six expert GEMMs alone, on its plan
  double dense_gemm_ms = 0;   // the same six over all slots as one expert (one call each)
  double peak_tflops = 0;     // cuBLAS on one m³ product (--square-gemm) in the same precision
};

GemmRoofline time_gemms(const cuda::Context& ctx, const RoutingPlan& host_plan, int d, int f,
                        Precision precision, int m, int repeats) {
  cuda::DevicePlan plan;
  cuda::upload_plan(plan, host_plan, ctx.stream);
  const size_t S = size_t(plan.slot_count()), e = size_t(plan.n_experts);
  const size_t es = precision == Precision::kBf16 ? 2 : 4;
  // Operands in the precision's element size (zeros: the speed does not depend on the values).
  auto operand = [&](size_t elements) {
    DeviceVec<unsigned char> v(elements * es);
    v.zero(ctx.stream);
    return v;
  };
  DeviceVec<unsigned char> x_in = operand(S * d), hidden = operand(S * f), d_out = operand(S * d),
                           d_pre = operand(S * f), w1 = operand(e * d * f), w2 = operand(e * f * d);
  DeviceVec<float> pre(S * f), out(S * d), d_hidden(S * f), d_x_in(S * d), dw1(e * d * f),
      dw2(e * f * d);
  dw1.zero(ctx.stream);
  dw2.zero(ctx.stream);
  auto six_gemms = [&](const cuda::DevicePlan& p) {
    cuda::expert_gemm_rows(ctx.blas, p, false, f, d, x_in.data(), w1.data(), pre.data(), precision);
    cuda::expert_gemm_rows(ctx.blas, p, false, d, f, hidden.data(), w2.data(), out.data(),
                           precision);
    cuda::expert_gemm_rows(ctx.blas, p, true, f, d, d_out.data(), w2.data(), d_hidden.data(),
                           precision);
    cuda::expert_gemm_weight_grad(ctx.blas, p, f, d, hidden.data(), d_out.data(), dw2.data(),
                                  precision);
    cuda::expert_gemm_weight_grad(ctx.blas, p, d, f, x_in.data(), d_pre.data(), dw1.data(),
                                  precision);
    cuda::expert_gemm_rows(ctx.blas, p, true, d, f, d_pre.data(), w1.data(), d_x_in.data(),
                           precision);
  };
  GemmRoofline r;
  r.expert_gemm_ms = device_ms(ctx, repeats, [&] { six_gemms(plan); });
  // The same FLOPs as one big GEMM each: what splitting the rows by expert costs.
  cuda::DevicePlan one;
  one.n_tokens = plan.n_tokens;
  one.n_experts = 1;
  one.expert_offsets_host = {0, int(S)};
  r.dense_gemm_ms = device_ms(ctx, repeats, [&] { six_gemms(one); });
  DeviceVec<unsigned char> a = operand(size_t(m) * m), b = operand(size_t(m) * m);
  DeviceVec<float> c(size_t(m) * m);
  cuda::Gemm g;
  g.m = g.n = g.k = m;
  g.a = a.data();
  g.b = b.data();
  g.c = c.data();
  const double ms = device_ms(ctx, repeats, [&] { cuda::gemm(ctx.blas, g, precision); });
  r.peak_tflops = 2.0 * m * m * double(m) / (ms * 1e-3) * 1e-12;
  return r;
}

// What the roofline allocates beside the layer, the larger of time_gemms' (its six GEMMs' operands
// and results over `slots` rows, cuBLAS's square product) and copy_gbps' (two copy buffers).
double roofline_bytes(const MoeConfig& cfg, double slots, const LayerBenchOptions& o) {
  const double d = cfg.d_model, f = cfg.d_ff, e = cfg.expert_count(), m = o.square_gemm;
  const double es = cfg.precision == Precision::kBf16 ? 2 : 4;
  const double six = (es + 4) * (2 * slots * (d + f) + 2 * e * d * f),
               square = (2 * es + 4) * m * m;
  return std::max(six + square, 2.0 * double(o.copy_mb) * (1 << 20));
}

// The device's copy bandwidth: read + write bytes per second of a device-to-device copy.
double copy_gbps(const cuda::Context& ctx, size_t bytes, int repeats) {
  DeviceVec<unsigned char> a(bytes), b(bytes);
  a.zero(ctx.stream);
  const double ms = device_ms(ctx, repeats, [&] {
    ECMOE_CUDA_CHECK(
        cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream));
  });
  return 2.0 * double(bytes) / (ms * 1e-3) * 1e-9;
}

}  // namespace

void run_layer_bench_cuda(const LayerBenchOptions& o) {
  const MoeConfig cfg = layer_bench_config(o);
  ECMOE_CHECK(!comm().parallel(), "bench layer --device cuda: one process only (not under mpirun)");
  const std::optional<DeviceMemory> memory = device_memory(train_device("cuda"));
  check_moe_layer_memory(cfg, o.tokens, layer_bench_sizes(o),
                         roofline_bytes(cfg, moe_slot_count(cfg, o.tokens, true), o),
                         memory ? &*memory : nullptr);
  const cuda::Context& ctx = cuda::context();
  const int n = o.tokens, d = o.d_model, f = o.d_ff;

  // Parameters straight into device memory (a layer of the large shapes holds several GB): each
  // tensor is a block of up to 2^24 normal values drawn in parallel, repeated over the tensor.
  TensorTable table;
  declare_moe_params(table, "", cfg);
  DeviceVec<float> dparams(size_t(table.total_floats())), dgrads(size_t(table.total_floats()));
  dparams.zero(ctx.stream);
  dgrads.zero(ctx.stream);
  auto normal_block = [](int64_t count, float scale, uint64_t stream_id) {
    std::vector<float> v(static_cast<size_t>(count));
    const Rng r(1, stream_id);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) v[size_t(i)] = scale * r.normal(uint64_t(i));
    return v;
  };
  auto fill = [&](const std::string& name, float scale, uint64_t stream_id) {
    const TensorSpec& spec = table.spec(name);
    const int64_t count = spec.numel(), block = std::min<int64_t>(count, int64_t(1) << 24);
    const std::vector<float> v = normal_block(block, scale, stream_id);
    // On the context's stream (the zeroing above is there too; the legacy default stream does
    // not wait for a non-blocking one). A pageable source is staged before the call returns.
    for (int64_t at = 0; at < count; at += block)
      ECMOE_CUDA_CHECK(cudaMemcpyAsync(dparams.data() + spec.offset + at, v.data(),
                                       sizeof(float) * size_t(std::min(block, count - at)),
                                       cudaMemcpyHostToDevice, ctx.stream));
    ctx.synchronize();
  };
  auto param = [&](DeviceVec<float>& buf, const std::string& name) -> float* {
    return table.contains(name) ? buf.data() + table.spec(name).offset : nullptr;
  };
  if (table.contains("router.weight")) fill("router.weight", 0.5f, 1);
  fill("experts.w1", 1.f / std::sqrt(float(d)), 2);
  fill("experts.w2", 1.f / std::sqrt(float(f)), 3);
  const MoeWeights w{param(dparams, "router.weight"), param(dparams, "experts.w1"),
                     param(dparams, "experts.w2")};
  MoeGrads g{param(dgrads, "router.weight"), param(dgrads, "experts.w1"),
             param(dgrads, "experts.w2")};
  const std::vector<float> x = normal_block(int64_t(n) * d, 1.f, 4),
                           dy = normal_block(int64_t(n) * d, 1e-3f, 5);
  std::vector<int32_t> ids(n);
  const Rng rng(2, 3);
  for (int t = 0; t < n; ++t) ids[t] = int32_t(rng.below(t, 8000));
  DeviceVec<float> dx(x.size()), ddy, dxin, y(x.size());
  dxin.upload(std::span<const float>(x), ctx.stream);
  ddy.upload(std::span<const float>(dy), ctx.stream);
  dx.zero(ctx.stream);
  ctx.synchronize();

  MoeLayer layer(cfg);
  layer.set_backend(cuda::make_moe_backend());
  layer.backend()->set_collect_stats(false);
  const MoeInput in{dxin.data(), ids.data(), n, true, 0};
  const ForwardBackwardMs runs = time_forward_backward(
      o.warmup, o.repeats, [&] { layer.forward(w, in, y.data()); },
      [&] { layer.backward(w, g, ddy.data(), dx.data()); }, [&] { ctx.synchronize(); });
  // The breakdown, in runs of their own (timing each phase synchronises the device).
  PhaseTimes phases;
  layer.set_phase_times(&phases);
  for (int r = 0; r < o.repeats; ++r) {
    layer.forward(w, in, y.data());
    layer.backward(w, g, ddy.data(), dx.data());
  }
  layer.set_phase_times(nullptr);
  // One more forward with the routing statistics, for the report (the timed runs collect none).
  layer.backend()->set_collect_stats(true);
  const MoeOutput routed = layer.forward(w, in, y.data());
  const RoutingPlan& plan = layer.plan();

  const GemmRoofline roof = time_gemms(ctx, plan, d, f, cfg.precision, o.square_gemm, o.repeats);
  const double copy = copy_gbps(ctx, size_t(o.copy_mb) << 20, 5);
  const double flops = expert_gemm_flops(plan, d, f);
  const double t = median(runs.total), tg = roof.expert_gemm_ms;
  const double outside = std::max(0.0, (t - tg) / t);
  const PhaseSummary phase_summary = summarize_phases(phases, o.repeats);
  double moving_ms = 0;
  for (const auto& [name, ms] : phase_summary.ms)
    if (name.rfind("dispatch", 0) == 0 || name.rfind("combine", 0) == 0) moving_ms += ms;
  // Bytes dispatch, combine and their adjoints read and write (rows of 4-byte floats; the slot
  // copies the GEMMs read in the precision's size).
  const double S = plan.slot_count(), es = cfg.precision == Precision::kBf16 ? 2 : 4;
  const double moved = S * d * (4 + es)                  // dispatch
                       + S * d * 4 + double(n) * d * 4   // combine
                       + S * d * (8 + es)                // combine adjoint
                       + S * d * 4 + double(n) * d * 8;  // dispatch adjoint
  const double moving_gbps = moving_ms > 0 ? moved / (moving_ms * 1e-3) * 1e-9 : 0;
  const std::string gpu = cuda::device_summary();
  if (o.json) {
    nlohmann::json j = layer_report_json(
        o, cfg,
        {runs.total, runs.forward, runs.backward, roof.expert_gemm_ms, roof.dense_gemm_ms, flops});
    j.update({{"device", "cuda"},
              {"gpu", gpu},
              {"expert_gemm_tflops", flops / tg * 1e-9},
              {"cublas_square_tflops", roof.peak_tflops},
              {"square_gemm", o.square_gemm},
              {"outside_gemm_share", outside},
              {"dispatch_combine_bytes", moved},
              {"dispatch_combine_gbps", moving_gbps},
              {"copy_gbps", copy},
              {"slots", plan.slot_count()}});
    j.update(routing_report_fields(routed.stats));
    j.update(phase_summary.report_fields());
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("router %s, %d tokens, d_model %d, d_ff %d, %d experts, capacity factor %g, %s\n",
              o.router.c_str(), n, d, f, o.experts, o.capacity_factor,
              precision_name(cfg.precision).c_str());
  std::printf("gpu: %s\n", gpu.c_str());
  std::printf("forward+backward: %.3f ms median of %d (forward %.3f, backward %.3f)\n", t,
              o.repeats, median(runs.forward), median(runs.backward));
  std::printf(
      "expert GEMMs alone: %.3f ms, %.1f TFLOP/s (as one expert: %.1f TFLOP/s; cuBLAS at %d^3: "
      "%.1f TFLOP/s)\n",
      tg, flops / tg * 1e-9, flops / roof.dense_gemm_ms * 1e-9, o.square_gemm, roof.peak_tflops);
  std::printf("outside expert GEMMs: %.1f%%\n", 100.0 * outside);
  std::printf("dispatch+combine+adjoints: %.1f MB at %.0f GB/s (device copy: %.0f GB/s)\n",
              moved * 1e-6, moving_gbps, copy);
  phase_summary.print("mean ms, device synchronised per phase", 3);
}

#endif

}  // namespace ecmoe::cli
