// Every op of the CUDA backend against the CPU op of the same name on the same inputs (the shape
// of ggml's test-backend-ops): bitwise where both sides do the same arithmetic in the same order
// (copies, the inverse index, the routing plan, the gate adjoint), within 1e-5 relative in fp32
// where the order or the math library differs, and within one bf16 rounding step (up to 2^-7
// relative) where both round to bf16 after such a difference. Without a GPU every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if ECMOE_CUDA_EMULATED
#include <cuda_runtime.h>  // cudaemu::blocking_host_waits
#endif

#include "core/bf16.h"
#include "core/error.h"
#include "cuda/aux_losses.h"
#include "cuda/device_plan.h"
#include "cuda/experts.h"
#include "cuda/lazy_zero_grads.h"
#include "cuda/moe_ops.h"
#include "cuda/nn_backend.h"
#include "cuda/nn_ops.h"
#include "cuda/pinned_staging.h"
#include "cuda/readback.h"
#include "cuda/route_expert_choice.h"
#include "cuda/route_mask.h"
#include "cuda/route_token_choice.h"
#include "cuda_test_util.h"
#include "moe/aux_losses.h"
#include "moe/dispatch_combine.h"
#include "moe/expert_ffn.h"
#include "moe/gate_backward.h"
#include "moe/router_entropy.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"
#include "moe/softmax_rows.h"
#include "nn/gelu.h"

using namespace ecmoe;
using namespace ecmoe::cuda;
using namespace ecmoe::cuda::testing;

namespace {

constexpr double kFp32 = 1e-5;
constexpr double kBf16Step = 1.0 / 256;  // one bf16 rounding step, relative

RoutingPlan route(RouterKind kind, const std::vector<float>& probs, int n, int e,
                  float capacity = 2.f, int group_size = 0) {
  MoeConfig config;
  config.router = kind;
  config.n_experts = e;
  config.group_size = group_size;
  RouteRequest request;
  request.probs = probs.data();
  request.n_tokens = n;
  request.capacity_factor = capacity;
  return route_tokens(config, request).plan;
}

// Plans of every shape the ops meet: expert choice (uniform loads), top-2 with drops (tokens
// without slots, uneven loads), top-1 and an empty expert.
std::vector<RoutingPlan> test_plans(int n, int e) {
  const std::vector<float> probs = random_probs(n, e, 3);
  std::vector<RoutingPlan> plans = {route(RouterKind::kExpertChoice, probs, n, e, 2.f, 16),
                                    route(RouterKind::kTop2, probs, n, e, 0.6f),
                                    route(RouterKind::kTop1, probs, n, e, 1.f)};
  std::vector<Assignment> some;
  for (int t = 0; t < n; t += 3) some.push_back({(t / 3) % 2 == 0 ? 0 : e - 1, t, 0.5f + t});
  plans.push_back(make_routing_plan(n, e, GateKind::kScore, some));
  return plans;
}

TEST(CudaOps, DispatchAndCombineMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  const int n = 70, e = 6;
  for (int d : {1, 33, 300}) {
    for (const RoutingPlan& plan : test_plans(n, e)) {
      const int S = plan.slot_count();
      DevicePlan dplan;
      upload_plan(dplan, plan, stream());
      const std::vector<float> x = random_normal(size_t(n) * d, 1),
                               rows = random_normal(size_t(S) * d, 2),
                               dy = random_normal(size_t(n) * d, 3),
                               dx0 = random_normal(size_t(n) * d, 4);
      std::vector<float> slots(size_t(S) * d), dx = dx0, y(size_t(n) * d), d_out(size_t(S) * d),
                                               dgate(S);
      std::vector<uint16_t> slots16(size_t(S) * d), d_out16(size_t(S) * d);
      dispatch_forward(slots.data(), x.data(), plan, d);
      dispatch_forward(slots16.data(), x.data(), plan, d);
      dispatch_backward(dx.data(), rows.data(), plan, d);
      combine_forward(y.data(), rows.data(), plan, d);
      combine_backward(d_out.data(), dgate.data(), dy.data(), rows.data(), plan, d);
      combine_backward(d_out16.data(), dgate.data(), dy.data(), rows.data(), plan, d);

      DeviceVec<float> gx = to_device(x), grows = to_device(rows), gdy = to_device(dy),
                       gdx = to_device(dx0), gslots(size_t(S) * d), gy(size_t(n) * d),
                       gd_out(size_t(S) * d), gdgate(S), gdgate16(S);
      DeviceVec<uint16_t> gslots16(size_t(S) * d), gd_out16(size_t(S) * d);
      cuda::dispatch_forward(gslots.data(), gx.data(), dplan, d, stream());
      cuda::dispatch_forward(gslots16.data(), gx.data(), dplan, d, stream());
      cuda::dispatch_backward(gdx.data(), grows.data(), dplan, d, stream());
      cuda::combine_forward(gy.data(), grows.data(), dplan, d, stream());
      cuda::combine_backward(gd_out.data(), gdgate.data(), gdy.data(), grows.data(), dplan, d,
                             stream());
      cuda::combine_backward(gd_out16.data(), gdgate16.data(), gdy.data(), grows.data(), dplan, d,
                             stream());
      EXPECT_TRUE(same_bits(to_host(gslots), slots));
      EXPECT_TRUE(same_bits(to_host(gslots16), slots16));
      EXPECT_TRUE(same_bits(to_host(gdx), dx));  // the same additions in the same order
      EXPECT_TRUE(close(to_host(gy), y, kFp32));
      EXPECT_TRUE(same_bits(to_host(gd_out), d_out));
      EXPECT_TRUE(same_bits(to_host(gd_out16), d_out16));
      EXPECT_TRUE(close(to_host(gdgate), dgate, kFp32));
      EXPECT_TRUE(same_bits(to_host(gdgate16), to_host(gdgate)));
      // With a residual: the combine's own result plus the residual, bitwise.
      const std::vector<float> residual = random_normal(size_t(n) * d, 9);
      std::vector<float> want = to_host(gy);
      for (size_t j = 0; j < want.size(); ++j) want[j] += residual[j];
      DeviceVec<float> gres = to_device(residual), gyr(size_t(n) * d);
      cuda::combine_forward(gyr.data(), grows.data(), dplan, d, stream(), gres.data());
      EXPECT_TRUE(same_bits(to_host(gyr), want));
    }
  }
}

TEST(CudaOps, GeluMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  const int64_t n = 10007;
  std::vector<float> a = random_normal(n, 5, 3.f), dout = random_normal(n, 6);
  a[0] = 0.f;
  a[1] = -12.f;
  a[2] = 12.f;
  std::vector<float> out(n), da(n);
  std::vector<uint16_t> out16(n), da16(n);
  nn::gelu_forward_serial(out.data(), a.data(), n);
  nn::gelu_forward_serial(out16.data(), a.data(), n);
  nn::gelu_backward_serial(da.data(), dout.data(), a.data(), n);
  nn::gelu_backward_serial(da16.data(), dout.data(), a.data(), n);
  DeviceVec<float> ga = to_device(a), gdout = to_device(dout), gout(n), gda(n);
  DeviceVec<uint16_t> gout16(n), gda16(n);
  cuda::gelu_forward(gout.data(), ga.data(), n, stream());
  cuda::gelu_forward(gout16.data(), ga.data(), n, stream());
  cuda::gelu_backward(gda16.data(), gdout.data(), ga.data(), n, stream());
  cuda::gelu_backward(gda.data(), gdout.data(), ga.data(), n, stream());
  EXPECT_TRUE(close(to_host(gout), out, kFp32));
  EXPECT_TRUE(close(to_host(gda), da, kFp32));
  // One bf16 step apart at most, which is up to 2^-7 relative just above a power of two.
  EXPECT_TRUE(close(widen(to_host(gout16)), widen(out16), 2 * kBf16Step));
  EXPECT_TRUE(close(widen(to_host(gda16)), widen(da16), 2 * kBf16Step));
  // In place (da aliases dout), as the experts' backward calls it.
  cuda::gelu_backward(gdout.data(), gdout.data(), ga.data(), n, stream());
  EXPECT_TRUE(same_bits(to_host(gdout), to_host(gda)));
}

// The elementwise kernels take four elements at a time where every pointer is aligned for it,
// one at a time elsewhere (cuda/vector_access.cuh): both give the CPU's bits, tails included.
TEST(CudaOps, ElementwiseKernelsGiveTheSameBitsFourOrOneAtATime) {
  ECMOE_REQUIRE_GPU();
  const int64_t n = 1003;
  const std::vector<float> a = random_normal(n, 7, 3.f), b = random_normal(n, 8);
  DeviceVec<float> ga = to_device(a), gb = to_device(b), gout(n);
  DeviceVec<uint16_t> g16(n);
  auto tail = [](const auto& v, int64_t at) {
    return std::vector<typename std::decay_t<decltype(v)>::value_type>(v.begin() + at, v.end());
  };
  std::vector<float> gelu4, dgelu4, dgelu16_4, gelu16_4;  // at offset 0: four at a time
  for (const int64_t at : {0, 1, 2}) {                    // offsets of 0 (aligned), 4 and 8 bytes
    SCOPED_TRACE("offset " + std::to_string(at));
    const int64_t m = n - at;
    std::vector<uint16_t> want16(m);
    convert_to_bf16(want16.data(), a.data() + at, m);
    cuda::to_bf16(g16.data() + at, ga.data() + at, m, stream());
    EXPECT_TRUE(same_bits(tail(to_host(g16), at), want16));
    // out = a + b; then a += out and b += out, each element as the CPU adds it.
    std::vector<float> sum(m), da = tail(a, at), db = tail(b, at);
    for (int64_t i = 0; i < m; ++i) sum[i] = a[at + i] + b[at + i];
    for (int64_t i = 0; i < m; ++i) da[i] += sum[i], db[i] += sum[i];
    DeviceVec<float> gda = to_device(a), gdb = to_device(b);
    cuda::residual_forward(gout.data() + at, ga.data() + at, gb.data() + at, m, stream());
    cuda::residual_backward(gda.data() + at, gdb.data() + at, gout.data() + at, m, stream());
    EXPECT_TRUE(same_bits(tail(to_host(gout), at), sum));
    EXPECT_TRUE(same_bits(tail(to_host(gda), at), da));
    EXPECT_TRUE(same_bits(tail(to_host(gdb), at), db));
    // GELU and its backward: the same bits one or four at a time.
    cuda::gelu_forward(gout.data() + at, ga.data() + at, m, stream());
    DeviceVec<float> gd = to_device(b);
    cuda::gelu_backward(gd.data() + at, gd.data() + at, ga.data() + at, m, stream());
    DeviceVec<uint16_t> gd16(n), gg16(n);
    cuda::gelu_backward(gd16.data() + at, gb.data() + at, ga.data() + at, m, stream());
    cuda::gelu_forward(gg16.data() + at, ga.data() + at, m, stream());
    const std::vector<float> gelu = to_host(gout), dgelu = to_host(gd),
                             dgelu16 = widen(to_host(gd16)), gelu16 = widen(to_host(gg16));
    if (at == 0) {
      gelu4 = gelu, dgelu4 = dgelu, dgelu16_4 = dgelu16, gelu16_4 = gelu16;
    } else {
      EXPECT_TRUE(same_bits(tail(gelu, at), tail(gelu4, at)));
      EXPECT_TRUE(same_bits(tail(gelu16, at), tail(gelu16_4, at)));
      EXPECT_TRUE(same_bits(tail(dgelu, at), tail(dgelu4, at)));
      EXPECT_TRUE(same_bits(tail(dgelu16, at), tail(dgelu16_4, at)));
    }
  }
}

TEST(CudaOps, SoftmaxRowsMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (auto [n, e] : {std::pair{1, 1}, std::pair{37, 8}, std::pair{513, 64}}) {
    const std::vector<float> logits = random_normal(size_t(n) * e, 7, 4.f),
                             dprobs = random_normal(size_t(n) * e, 8),
                             dlogits0 = random_normal(size_t(n) * e, 9);
    std::vector<float> probs(size_t(n) * e), dlogits = dlogits0;
    softmax_rows_forward(probs.data(), logits.data(), n, e);
    softmax_rows_backward(dlogits.data(), dprobs.data(), probs.data(), n, e);
    DeviceVec<float> gl = to_device(logits), gdp = to_device(dprobs), gdl = to_device(dlogits0),
                     gp(size_t(n) * e);
    cuda::softmax_rows_forward(gp.data(), gl.data(), n, e, stream());
    EXPECT_TRUE(close(to_host(gp), probs, kFp32));
    DeviceVec<float> gp_cpu = to_device(probs);  // the backward on the same scores
    cuda::softmax_rows_backward(gdl.data(), gdp.data(), gp_cpu.data(), n, e, stream());
    EXPECT_TRUE(close(to_host(gdl), dlogits, kFp32));
  }
}

TEST(CudaOps, InverseIndexIsTheCpus) {
  ECMOE_REQUIRE_GPU();
  for (const RoutingPlan& plan : test_plans(301, 7)) {
    DevicePlan dplan;
    upload_plan(dplan, plan, stream());
    dplan.token_offsets.zero(stream());
    build_inverse_index(dplan, stream());
    const RoutingPlan back = download_plan(dplan, stream());
    EXPECT_EQ(back.token_offsets, plan.token_offsets);
    EXPECT_EQ(back.token_slots, plan.token_slots);
  }
}

TEST(CudaOps, GateBackwardMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  const int n = 90, e = 5;
  const std::vector<float> probs = random_probs(n, e, 11);
  for (RouterKind kind : {RouterKind::kExpertChoice, RouterKind::kTop1, RouterKind::kTop2}) {
    const RoutingPlan plan = route(kind, probs, n, e, 0.8f);
    const std::vector<float> dgate = random_normal(plan.slot_count(), 12),
                             dprobs0 = random_normal(size_t(n) * e, 13);
    std::vector<float> dprobs = dprobs0;
    gate_backward(dprobs.data(), plan, probs.data(), dgate.data());
    DevicePlan dplan;
    upload_plan(dplan, plan, stream());
    DeviceVec<float> gp = to_device(probs), gdg = to_device(dgate), gdp = to_device(dprobs0);
    cuda::gate_backward(gdp.data(), dplan, gp.data(), gdg.data(), stream());
    if (plan.gate_kind == GateKind::kScore)
      EXPECT_TRUE(same_bits(to_host(gdp), dprobs)) << router_name(kind);
    else
      EXPECT_TRUE(close(to_host(gdp), dprobs, kFp32)) << router_name(kind);
  }
}

RouteResult cpu_route(const MoeConfig& config, const std::vector<float>& probs, int n,
                      float capacity) {
  RouteRequest request;
  request.probs = probs.data();
  request.n_tokens = n;
  request.capacity_factor = capacity;
  return route_tokens(config, request);
}

// The GPU's plan equals the CPU's, field by field (gates bitwise).
void expect_same_plan(const RoutingPlan& gpu, const RoutingPlan& cpu) {
  EXPECT_EQ(gpu.gate_kind, cpu.gate_kind);
  EXPECT_EQ(gpu.expert_offsets, cpu.expert_offsets);
  EXPECT_EQ(gpu.slot_token, cpu.slot_token);
  EXPECT_TRUE(same_bits(gpu.slot_gate, cpu.slot_gate));
  EXPECT_EQ(gpu.token_offsets, cpu.token_offsets);
  EXPECT_EQ(gpu.token_slots, cpu.token_slots);
  EXPECT_EQ(gpu.choices_per_token, cpu.choices_per_token);
  EXPECT_EQ(gpu.token_choices, cpu.token_choices);
  EXPECT_TRUE(plan_is_consistent(gpu));
}

// count_plan_on_device against plan_counts on the plan the device made (copied to the host):
// the histogram of experts per token and its maximum.
void expect_device_counts(const DevicePlan& device, const RoutingPlan& host) {
  DeviceVec<int64_t> counts;
  count_plan_on_device(device, counts, stream());
  const std::vector<int64_t> got = to_host(counts);
  const RoutingStats want = plan_counts(host);
  ASSERT_EQ(got.size(), size_t(kPlanCounts));
  for (int b = 0; b < 6; ++b) EXPECT_EQ(got[b], want.experts_per_token[b]) << "bin " << b;
  EXPECT_EQ(got[6], want.max_experts_per_token);
}

// Router scores for a routing test: softmax rows, or quantised to `levels` values per expert
// share so that ties are everywhere.
std::vector<float> routing_scores(int n, int e, uint64_t seed, int levels) {
  std::vector<float> probs = random_probs(n, e, seed);
  if (levels > 0)
    for (float& p : probs) p = float(int(p * levels * e)) / float(levels * e);
  return probs;
}

struct RouteShape {
  int n, e, group_size;
  float capacity;
  int levels;  // > 0: scores quantised to this many values, so ties are everywhere
};

TEST(CudaOps, ExpertChoicePlanIsTheCpusSlotForSlot) {
  ECMOE_REQUIRE_GPU();
  const std::vector<RouteShape> shapes = {{64, 8, 0, 2.f, 0},     {5, 8, 0, 2.f, 0},
                                          {1, 4, 0, 2.f, 0},      {100, 6, 32, 1.3f, 0},
                                          {257, 7, 0, 0.9f, 0},   {300, 8, 64, 2.f, 3},
                                          {1000, 16, 0, 2.f, 1},  {4096, 64, 1024, 2.f, 0},
                                          {20000, 16, 0, 2.f, 0}, {3000, 32, 0, 1.f, 50}};
  for (const RouteShape& s : shapes) {
    const std::vector<float> probs = routing_scores(s.n, s.e, 17 + s.n, s.levels);
    MoeConfig config;
    config.router = RouterKind::kExpertChoice;
    config.n_experts = s.e;
    config.group_size = s.group_size;
    const RouteResult cpu = cpu_route(config, probs, s.n, s.capacity);
    DevicePlan dplan;
    ExpertChoiceScratch scratch;
    DeviceVec<float> gp = to_device(probs);
    cuda::route_expert_choice(dplan, scratch, gp.data(), s.n, config, s.capacity, stream());
    const std::vector<float> kth = to_host(scratch.kth);
    const RoutingPlan gpu = download_plan(dplan, stream());
    SCOPED_TRACE("n " + std::to_string(s.n) + ", e " + std::to_string(s.e) + ", group " +
                 std::to_string(s.group_size) + ", levels " + std::to_string(s.levels));
    expect_same_plan(gpu, cpu.plan);
    const auto groups = routing_groups(s.n, s.group_size);
    expect_device_counts(dplan, gpu);
    const RoutingStats stats =
        expert_choice_stats(plan_counts(gpu), kth, groups[0].size, int(groups.size()), s.capacity);
    EXPECT_EQ(stats.kth_score_sum, cpu.stats.kth_score_sum);
    EXPECT_EQ(stats.capacity, cpu.stats.capacity);
  }
}

TEST(CudaOps, TokenChoicePlanIsTheCpusSlotForSlot) {
  ECMOE_REQUIRE_GPU();
  struct Shape {
    int n, e, k, group_size;
    float capacity;
    int levels;
    bool renormalize;
    bool batch_prioritized = false;
  };
  const std::vector<Shape> shapes = {
      {64, 8, 2, 0, 1.f, 0, true},
      {64, 8, 1, 0, 1.f, 0, false},
      {5, 8, 2, 0, 2.f, 0, true},
      {1, 4, 2, 0, 1.f, 0, true},
      {300, 6, 2, 64, 0.5f, 0, true},
      {300, 6, 3, 64, 1.25f, 4, true},
      {1000, 16, 2, 0, 1.f, 1, false},
      {20000, 64, 2, 4096, 1.f, 0, true},
      // Batch-prioritised: by top-1 score, stably (the quantised scores tie often).
      {300, 6, 2, 64, 0.5f, 0, true, true},
      {1000, 16, 1, 0, 0.5f, 1, false, true},
      {20000, 64, 2, 4096, 1.f, 2, true, true}};
  for (const Shape& s : shapes) {
    const std::vector<float> probs = routing_scores(s.n, s.e, 19 + s.n, s.levels);
    MoeConfig config;
    config.router = s.k == 1 ? RouterKind::kTop1 : RouterKind::kTop2;
    config.token_choice_k = s.k;
    config.n_experts = s.e;
    config.group_size = s.group_size;
    config.renormalize_gates = s.renormalize;
    config.batch_prioritized = s.batch_prioritized;
    const RouteResult cpu = cpu_route(config, probs, s.n, s.capacity);
    DevicePlan dplan;
    TokenChoiceScratch scratch;
    DeviceVec<float> gp = to_device(probs);
    const TokenChoiceCounts counts =
        cuda::route_token_choice(dplan, scratch, gp.data(), s.n, config, s.capacity, stream());
    const RoutingPlan gpu = download_plan(dplan, stream());
    SCOPED_TRACE("n " + std::to_string(s.n) + ", e " + std::to_string(s.e) + ", k " +
                 std::to_string(s.k) + ", group " + std::to_string(s.group_size) + ", levels " +
                 std::to_string(s.levels) + (s.batch_prioritized ? ", batch-prioritised" : ""));
    expect_same_plan(gpu, cpu.plan);
    expect_device_counts(dplan, gpu);
    EXPECT_EQ(counts.dropped, cpu.stats.dropped_assignments);
    EXPECT_EQ(counts.capacity, cpu.stats.capacity);
    EXPECT_EQ(counts.max_demand_over_capacity, cpu.stats.max_demand_over_capacity);
  }
}

// Dense, hash and expert_threshold (the per-pair routers) against the CPU's: plans slot for slot,
// and the statistics the shared per_pair_route_stats derives from them.
TEST(CudaOps, PerPairRouterPlansAreTheCpus) {
  ECMOE_REQUIRE_GPU();
  for (int n : {0, 1, 5, 3000}) {
    const int e = 8;
    // Scores quantised to 4 levels per expert share, so some equal a cutoff exactly.
    const std::vector<float> probs = routing_scores(n, e, 23 + n, 4);
    std::vector<int32_t> ids(n);
    for (int t = 0; t < n; ++t) ids[t] = (t * 7919 + 13) % 1000;
    std::vector<float> cutoffs(e);
    for (int i = 0; i < e; ++i) cutoffs[i] = float(i % 4 + 1) / float(4 * e);
    for (RouterKind router :
         {RouterKind::kDense, RouterKind::kHash, RouterKind::kExpertThreshold}) {
      MoeConfig config;
      config.router = router;
      config.n_experts = e;
      RouteRequest request;
      request.probs = probs.data();
      request.token_ids = ids.data();
      request.n_tokens = n;
      request.capacity_factor = 2.f;
      request.cutoffs = cutoffs.data();
      const RouteResult cpu = route_tokens(config, request);
      DevicePlan dplan;
      MaskRouteScratch scratch;
      DeviceVec<float> gp = to_device(probs);
      cuda::route_mask(dplan, scratch, gp.data(), ids.data(), cutoffs.data(), n, config, stream());
      const RoutingPlan gpu = download_plan(dplan, stream());
      SCOPED_TRACE(router_name(router) + " n " + std::to_string(n));
      expect_same_plan(gpu, cpu.plan);
      expect_device_counts(dplan, gpu);
      EXPECT_EQ(dplan.identity, router == RouterKind::kDense);  // slot t holds token t, gate 1
      const RoutingStats stats = per_pair_route_stats(config, request, plan_counts(gpu));
      EXPECT_EQ(stats.capacity, cpu.stats.capacity);
      EXPECT_EQ(stats.max_demand_over_capacity, cpu.stats.max_demand_over_capacity);
      EXPECT_EQ(stats.kth_score_sum, cpu.stats.kth_score_sum);
    }
  }
}

// The experts' forward and backward on one plan, fp32 and bf16, against moe/expert_ffn.h: the
// test plans, constant gates (no gate gradient: dgate is not computed) and a dense layer's plan
// (one expert, slot t = token t: the identity, whose GEMMs write y and add into dx themselves).
TEST(CudaOps, ExpertsMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  const int n = 96, d = 40, f = 72;
  std::vector<std::pair<int, RoutingPlan>> cases;  // (experts, plan)
  for (RoutingPlan& plan : test_plans(n, 4)) cases.emplace_back(4, std::move(plan));
  std::vector<Assignment> constant;
  for (int t = 0; t < n; t += 2) constant.push_back({t % 3, t, 1.f});
  cases.emplace_back(3, make_routing_plan(n, 3, GateKind::kConstant, constant));
  cases.emplace_back(1, route(RouterKind::kDense, random_probs(n, 1, 3), n, 1));
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    const double tol = precision == Precision::kFp32 ? kFp32 : 2 * kBf16Step;
    for (const auto& [e, plan] : cases) {
      const int S = plan.slot_count();
      const std::vector<float> x = random_normal(size_t(n) * d, 21),
                               w1 = random_normal(size_t(e) * d * f, 22, 0.15f),
                               w2 = random_normal(size_t(e) * f * d, 23, 0.12f),
                               dy = random_normal(size_t(n) * d, 24),
                               start = random_normal(size_t(e) * d * f, 25),
                               dx_start = random_normal(size_t(n) * d, 26);
      std::vector<float> y(size_t(n) * d), dx = dx_start, dw1 = start, dw2(size_t(e) * f * d, 0.f),
                                           dgate(S);
      ExpertActivations act;
      ExpertScratch scratch;
      ecmoe::experts_forward(y.data(), act, plan, x.data(), w1.data(), w2.data(), d, f, precision);
      ecmoe::experts_backward(dx.data(), dw1.data(), dw2.data(), dgate.data(), scratch, dy.data(),
                              act, plan, w1.data(), w2.data(), d, f, precision);

      DevicePlan dplan;
      upload_plan(dplan, plan, stream());
      EXPECT_EQ(dplan.identity, e == 1);
      DeviceVec<float> gx = to_device(x), gw1 = to_device(w1), gw2 = to_device(w2),
                       gdy = to_device(dy), gdw1 = to_device(start), gdx = to_device(dx_start),
                       gy(size_t(n) * d), gdw2(size_t(e) * f * d), gdgate(S);
      gdw2.zero(stream());
      DeviceExpertActivations gact;
      DeviceExpertScratch gscratch;
      cuda::experts_forward(gy.data(), gact, dplan, gx.data(), gw1.data(), gw2.data(), d, f,
                            precision, context());
      cuda::experts_backward(gdx.data(), gdw1.data(), gdw2.data(), gdgate.data(), gscratch,
                             gdy.data(), gact, dplan, gw1.data(), gw2.data(), d, f, context());
      SCOPED_TRACE(std::string(precision_name(precision)) + ", " + std::to_string(e) +
                   " experts, slots " + std::to_string(S) +
                   (dplan.uniform_load() > 0 ? " (batched GEMMs)" : " (a GEMM per expert)"));
      EXPECT_TRUE(close(to_host(gact.pre), act.pre, tol));
      EXPECT_TRUE(close(to_host(gy), y, tol));
      EXPECT_TRUE(close(to_host(gdx), dx, tol));
      EXPECT_TRUE(close(to_host(gdw1), dw1, tol));
      EXPECT_TRUE(close(to_host(gdw2), dw2, tol));
      if (plan.gate_kind != GateKind::kConstant) EXPECT_TRUE(close(to_host(gdgate), dgate, tol));
      // dx written over a random buffer (GradWrite::kOverwrite): the CPU's from zeros, every
      // token's row written (zeros for a token without slots).
      std::vector<float> dx_zero(size_t(n) * d, 0.f), dw_cpu = start;
      ecmoe::experts_backward(dx_zero.data(), dw_cpu.data(), dw_cpu.data(), dgate.data(), scratch,
                              dy.data(), act, plan, w1.data(), w2.data(), d, f, precision);
      DeviceVec<float> gdx_over = to_device(dx_start), gdw_junk = to_device(start);
      cuda::experts_backward(gdx_over.data(), gdw_junk.data(), gdw_junk.data(), gdgate.data(),
                             gscratch, gdy.data(), gact, dplan, gw1.data(), gw2.data(), d, f,
                             context(), nullptr, nn::GradWrite::kOverwrite);
      EXPECT_TRUE(close(to_host(gdx_over), dx_zero, tol));
      // With a residual: y plus the residual (a dense layer in bf16 adds it in its GEMM's
      // epilogue), the bits of adding it afterwards on the emulation; the backward is unchanged.
      const std::vector<float> residual = random_normal(size_t(n) * d, 27);
      std::vector<float> want = to_host(gy);
      for (size_t j = 0; j < want.size(); ++j) want[j] += residual[j];
      DeviceVec<float> gres = to_device(residual), gyr(size_t(n) * d);
      const int64_t lt_runs = gact.residual_gemm.runs();
      cuda::experts_forward(gyr.data(), gact, dplan, gx.data(), gw1.data(), gw2.data(), d, f,
                            precision, context(), nullptr, gres.data());
      const bool in_epilogue = dplan.identity && precision == Precision::kBf16;
      EXPECT_EQ(gact.residual_gemm.runs(), lt_runs + (in_epilogue ? 1 : 0));
      if (!in_epilogue || kEmulated)
        EXPECT_TRUE(same_bits(to_host(gyr), want));
      else
        EXPECT_TRUE(close(to_host(gyr), want, tol));
    }
  }
}

// The expert weight gradients in a training run's gradient buffer (Context::grads, zeroed
// lazily): learned at their first claim, left out of the memsets from then on and written with
// beta 0 (empty experts by a memset) over whatever the last step left there, the values of adding
// to zeros, the same bits at every step. Before any zero() the backward adds; a second backward in
// a step adds; a step without one reads zeros; a buffer attached anew (a resumed run) gets the
// same bits from its first step.
TEST(CudaOps, ExpertWeightGradientsOverwriteTheirLazilyZeroedRange) {
  ECMOE_REQUIRE_GPU();
  const int n = 96, e = 4, d = 40, f = 72;
  const int64_t w = int64_t(e) * d * f, pad = 37;  // [pad | dw1 | dw2 | pad] floats
  const std::vector<float> x = random_normal(size_t(n) * d, 31),
                           w1 = random_normal(size_t(w), 32, 0.15f),
                           w2 = random_normal(size_t(w), 33, 0.12f),
                           dy = random_normal(size_t(n) * d, 34),
                           junk = random_normal(size_t(2 * w + 2 * pad), 35);
  LazyZeroGrads& lazy = context().grads;
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    for (const RoutingPlan& plan : test_plans(n, e)) {
      DevicePlan dplan;
      upload_plan(dplan, plan, stream());
      SCOPED_TRACE(std::string(precision_name(precision)) + ", slots " +
                   std::to_string(plan.slot_count()));
      // The CPU's gradients, from zeros: after one backward and after two.
      std::vector<float> dx(size_t(n) * d), dw1(size_t(w), 0.f), dw2(size_t(w), 0.f),
          dgate(size_t(plan.slot_count())), y(size_t(n) * d);
      ExpertActivations act;
      ExpertScratch scratch;
      ecmoe::experts_forward(y.data(), act, plan, x.data(), w1.data(), w2.data(), d, f, precision);
      const auto cpu_backward = [&] {
        ecmoe::experts_backward(dx.data(), dw1.data(), dw2.data(), dgate.data(), scratch, dy.data(),
                                act, plan, w1.data(), w2.data(), d, f, precision);
      };
      cpu_backward();
      std::vector<float> once(pad, 0.f);
      once.insert(once.end(), dw1.begin(), dw1.end());
      once.insert(once.end(), dw2.begin(), dw2.end());
      once.insert(once.end(), size_t(pad), 0.f);
      cpu_backward();
      std::vector<float> twice(pad, 0.f);
      twice.insert(twice.end(), dw1.begin(), dw1.end());
      twice.insert(twice.end(), dw2.begin(), dw2.end());
      twice.insert(twice.end(), size_t(pad), 0.f);

      DeviceVec<float> grads = to_device(junk), gx = to_device(x), gw1 = to_device(w1),
                       gw2 = to_device(w2), gdy = to_device(dy), gdx(size_t(n) * d),
                       gy(size_t(n) * d), gdgate(size_t(plan.slot_count()));
      DeviceExpertActivations gact;
      DeviceExpertScratch gscratch;
      cuda::experts_forward(gy.data(), gact, dplan, gx.data(), gw1.data(), gw2.data(), d, f,
                            precision, context());
      const auto gpu_backward = [&] {
        cuda::experts_backward(gdx.data(), grads.data() + pad, grads.data() + pad + w,
                               gdgate.data(), gscratch, gdy.data(), gact, dplan, gw1.data(),
                               gw2.data(), d, f, context());
      };
      const double tol = precision == Precision::kFp32 ? kFp32 : 2 * kBf16Step;
      lazy.attach(grads.data(), 2 * w + 2 * pad);
      gpu_backward();  // no zero() yet: adds to what is there, and learns the two ranges
      EXPECT_EQ(lazy.learned_floats(), 2 * w);
      std::vector<float> junk_plus_once = junk;
      for (size_t i = 0; i < junk.size(); ++i) junk_plus_once[i] += once[i];
      EXPECT_TRUE(close(to_host(grads), junk_plus_once, tol));
      std::vector<float> first;
      for (int step = 1; step <= 3; ++step) {  // over the last step's gradients, unzeroed
        lazy.zero(stream());
        gpu_backward();
        lazy.settle(stream());
        const std::vector<float> got = to_host(grads);
        if (step == 1) {
          EXPECT_TRUE(close(got, once, tol));
          first = got;
        } else {
          EXPECT_TRUE(same_bits(got, first)) << "step " << step;
        }
      }
      lazy.zero(stream());  // two backwards in a step: the second adds to the first
      gpu_backward();
      gpu_backward();
      lazy.settle(stream());
      EXPECT_TRUE(close(to_host(grads), twice, tol));
      lazy.zero(stream());  // no backward: zeros when read, through the backend too
      std::vector<float> read(size_t(2 * w + 2 * pad), 1.f);
      make_nn_backend()->download(read.data(), grads.data(), read.size() * sizeof(float));
      EXPECT_EQ(read, std::vector<float>(read.size(), 0.f));
      // Attached anew over junk: zero(), then the first claim overwrites, as every step does.
      grads.upload(std::span<const float>(junk), stream());
      lazy.attach(grads.data(), 2 * w + 2 * pad);
      lazy.zero(stream());
      gpu_backward();
      lazy.settle(stream());
      EXPECT_TRUE(same_bits(to_host(grads), first));
      lazy.detach(grads.data());
      EXPECT_FALSE(lazy.attached(grads.data()));
    }
  }
}

}  // namespace

// Uploads through pinned staging: the host buffer is overwritten right after each upload, many
// uploads of each slot size are queued before the device has read any (the rings grow), sizes
// past the staging limit go directly; every device array holds what the host held when its
// upload was called, and (emulated, where queued work waits until a synchronisation) the host
// never waited for the device to make room.
TEST(CudaOps, UploadsAreStagedSoTheHostMayReuseItsBuffer) {
  ECMOE_REQUIRE_GPU();
  std::vector<size_t> sizes;
  for (int i = 0; i < 100; ++i) sizes.push_back(size_t(1) << (i % 20));  // 4 B .. 2 MB of ints
  sizes.push_back(kStagedBytesMax / sizeof(int) + 1);                    // copied directly
  std::vector<DeviceVec<int>> on_device(sizes.size());
  std::vector<int> host;
#if ECMOE_CUDA_EMULATED
  const unsigned long long waits_before = ::cudaemu::blocking_host_waits();
#endif
  for (size_t u = 0; u < sizes.size(); ++u) {
    host.assign(sizes[u], 0);
    for (size_t i = 0; i < host.size(); ++i) host[i] = int(u * 1000003 + i);
    on_device[u].upload(std::span<const int>(host), stream());
    std::fill(host.begin(), host.end(), -1);  // before the device has read it
  }
#if ECMOE_CUDA_EMULATED
  EXPECT_EQ(::cudaemu::blocking_host_waits(), waits_before);
#endif
  for (size_t u = 0; u < sizes.size(); ++u) {
    const std::vector<int> got = to_host(on_device[u]);
    ASSERT_EQ(got.size(), sizes[u]);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], int(u * 1000003 + i)) << "upload " << u << ", element " << i;
  }
}

// The auxiliary losses and the router's entropy on the device against moe/aux_losses.h and
// moe/router_entropy.h: one group and groups whose last one is shorter, groups longer than a
// chunk of 256 tokens, more groups than the final sum's block has threads, ties in the top-1
// choice; the gradients from zero and accumulated.
TEST(CudaOps, AuxLossesAndEntropyMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  struct Shape {
    int n, e, group_size;
  };
  for (const Shape& s : {Shape{1, 4, 0}, Shape{7, 3, 0}, Shape{1000, 8, 300}, Shape{600, 64, 0},
                         Shape{513, 16, 256}, Shape{100, 5, 1000}, Shape{5000, 8, 7}}) {
    SCOPED_TRACE("n " + std::to_string(s.n) + ", e " + std::to_string(s.e) + ", groups of " +
                 std::to_string(s.group_size));
    std::vector<float> logits = random_normal(size_t(s.n) * s.e, 41, 2.f);
    for (int i = 0; i < s.e; ++i) logits[i] = 0.5f;  // token 0: a tie between every expert
    std::vector<float> probs(logits.size());
    softmax_rows_forward(probs.data(), logits.data(), s.n, s.e);
    const AuxLossWeights weights{0.01f, 0.003f};
    const AuxLosses want =
        ecmoe::aux_losses_forward(logits.data(), probs.data(), s.n, s.e, s.group_size, weights);
    const double entropy = router_entropy_sum(probs.data(), s.n, s.e);
    DeviceVec<float> glogits = to_device(logits), gprobs = to_device(probs);
    AuxScratch scratch;
    auto device_aux = [&] {
      cuda::aux_losses_forward(glogits.data(), gprobs.data(), s.n, s.e, s.group_size, scratch,
                               stream());
      return aux_losses_values(to_host(scratch.totals).data(), s.n, weights);
    };
    const DeviceAux got = device_aux();
    EXPECT_NEAR(got.losses.load_balance, want.load_balance, kFp32 * want.load_balance);
    EXPECT_NEAR(got.losses.z_loss, want.z_loss, kFp32 * (1 + want.z_loss));
    EXPECT_NEAR(got.losses.weighted_total, want.weighted_total, kFp32 * (1 + want.weighted_total));
    EXPECT_NEAR(got.entropy_sum, entropy, 1e-9 * (1 + entropy));
    const std::vector<float> dlogits0 = random_normal(logits.size(), 42),
                             dprobs0 = random_normal(logits.size(), 43);
    std::vector<float> dlogits = dlogits0, dprobs = dprobs0;
    ecmoe::aux_losses_backward(dlogits.data(), dprobs.data(), logits.data(), probs.data(), s.n, s.e,
                               s.group_size, weights);
    DeviceVec<float> gdlogits = to_device(dlogits0), gdprobs = to_device(dprobs0);
    cuda::aux_losses_backward(gdlogits.data(), gdprobs.data(), gprobs.data(), s.n, s.e,
                              s.group_size, weights, scratch, stream());
    EXPECT_TRUE(close(to_host(gdlogits), dlogits, kFp32));
    EXPECT_TRUE(close(to_host(gdprobs), dprobs, kFp32));
    // Twice: the same bits.
    const DeviceAux again = device_aux();
    EXPECT_EQ(again.losses.weighted_total, got.losses.weighted_total);
    EXPECT_EQ(again.entropy_sum, got.entropy_sum);
  }
}

// Readback: several device arrays in one set, read after one wait, at their offsets; a larger
// set regrows the buffer; a set added but not recorded, or added past its room, is refused.
TEST(CudaOps, ReadbackReturnsEachArrayOfTheSet) {
  ECMOE_REQUIRE_GPU();
  Readback readback;
  for (size_t n : {size_t(3), size_t(5000)}) {
    const std::vector<int64_t> a = {1, -2, int64_t(1) << 40};
    std::vector<float> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = float(i) * 0.5f;
    const std::vector<double> c = {0.25, 1e300};
    DeviceVec<int64_t> da = to_device(a);
    DeviceVec<float> db = to_device(b);
    DeviceVec<double> dc = to_device(c);
    readback.begin(a.size() * 8 + n * 4 + c.size() * 8 + 3 * 16);
    const size_t at_a = readback.add(da.data(), a.size(), stream());
    const size_t at_b = readback.add(db.data(), n, stream());
    const size_t at_c = readback.add(dc.data(), c.size(), stream());
    readback.record(stream());
    readback.wait();
    EXPECT_EQ(std::vector<int64_t>(readback.at<int64_t>(at_a), readback.at<int64_t>(at_a) + 3), a);
    EXPECT_EQ(std::vector<float>(readback.at<float>(at_b), readback.at<float>(at_b) + n), b);
    EXPECT_EQ(std::vector<double>(readback.at<double>(at_c), readback.at<double>(at_c) + 2), c);
  }
  readback.begin(64);
  DeviceVec<double> one = to_device(std::vector<double>{1.0});
  readback.add(one.data(), 1, stream());
  EXPECT_THROW(readback.wait(), Error);
  EXPECT_THROW(readback.add(one.data(), 1 << 20, stream()), Error);
  readback.record(stream());
  readback.wait();
}
