// Capped expert choice on the GPU (cuda/route_expert_choice_capped.h) against the CPU's router
// (moe/capped_solver.h): the rounding exactly, for the same A; the solver within its tolerance;
// the whole route's plan feasible and, on these inputs, the CPU's; the same bits run to run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cuda/device_plan.h"
#include "cuda/route_expert_choice_capped.h"
#include "cuda_test_util.h"
#include "moe/capped_solver.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe::cuda::testing {
namespace {

struct CappedShape {
  int n, e, group_size;
  float capacity;
  int b;
  int levels;  // > 0: scores quantised to this many values, so ties are everywhere
};

std::string name_of(const CappedShape& s) {
  return "n " + std::to_string(s.n) + ", e " + std::to_string(s.e) + ", group " +
         std::to_string(s.group_size) + ", c " + std::to_string(s.capacity) + ", b " +
         std::to_string(s.b) + ", levels " + std::to_string(s.levels);
}

MoeConfig capped_config(const CappedShape& s) {
  MoeConfig config;
  config.router = RouterKind::kExpertChoiceCapped;
  config.n_experts = s.e;
  config.group_size = s.group_size;
  config.capped.max_experts_per_token = s.b;
  return config;
}

std::vector<float> capped_scores(const CappedShape& s, uint64_t seed) {
  std::vector<float> probs = random_probs(s.n, s.e, seed);
  if (s.levels > 0)
    for (float& p : probs) p = float(int(p * s.levels * s.e)) / float(s.levels * s.e);
  return probs;
}

// Small and awkward shapes (n < e with b · n >= e, groups that do not divide n, a cap that binds
// everywhere: e · k = b · n), ties, and `small`'s layer shape (the rounding only).
const std::vector<CappedShape> kShapes = {
    {3, 4, 0, 2.f, 2, 0},       {64, 8, 0, 2.f, 2, 0},   {64, 8, 0, 2.f, 2, 4},
    {100, 6, 32, 1.3f, 2, 0},   {77, 4, 0, 2.f, 3, 0},   {257, 7, 0, 0.9f, 1, 0},
    {300, 8, 64, 2.f, 2, 3},    {200, 16, 0, 4.f, 2, 0}, {450, 8, 150, 2.f, 2, 0},
    {1000, 16, 200, 2.f, 2, 0}, {4096, 8, 0, 2.f, 2, 0},
};

// The CPU's whole route, and each group's solution.
struct CpuCapped {
  RouteResult route;
  std::vector<CappedSolution> solutions;
};
CpuCapped cpu_capped(const MoeConfig& config, const std::vector<float>& probs, int n,
                     float capacity) {
  CpuCapped out;
  RouteRequest request;
  request.probs = probs.data();
  request.n_tokens = n;
  request.capacity_factor = capacity;
  out.route = route_tokens(config, request);
  for (const GroupRange& g : routing_groups(n, config.group_size)) {
    const int k =
        capped_capacity(g.size, config.n_experts, config.capped.max_experts_per_token, capacity);
    out.solutions.push_back(solve_capped_plan(probs.data() + int64_t(g.begin) * config.n_experts,
                                              g.size, config.n_experts, k, config.capped));
  }
  return out;
}

// A group's log A [e, size] out of the device's [e, n].
std::vector<float> group_log_plan(const std::vector<float>& log_plan, int n, int e,
                                  const GroupRange& g) {
  std::vector<float> out(size_t(e) * g.size);
  for (int i = 0; i < e; ++i)
    std::copy_n(log_plan.begin() + int64_t(i) * n + g.begin, g.size,
                out.begin() + int64_t(i) * g.size);
  return out;
}

// The route's statistics but the router's entropy, which route_tokens adds on the CPU and the
// layer sums on the device (cuda/aux_losses.h).
RoutingStats without_entropy(RoutingStats stats) {
  stats.router_entropy_sum = 0;
  return stats;
}

// Every expert has exactly its group's k tokens, all from its group, and no token more than b.
void expect_feasible(const RoutingPlan& plan, const MoeConfig& config, int n, float capacity) {
  const int e = config.n_experts, b = config.capped.max_experts_per_token;
  std::vector<int> per_token(size_t(n), 0);
  const auto groups = routing_groups(n, config.group_size);
  int per_expert = 0;
  for (const GroupRange& g : groups) per_expert += capped_capacity(g.size, e, b, capacity);
  for (int i = 0; i < e; ++i) {
    ASSERT_EQ(plan.expert_offsets[i + 1] - plan.expert_offsets[i], per_expert) << "expert " << i;
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s)
      ++per_token[plan.slot_token[s]];
  }
  for (int t = 0; t < n; ++t) EXPECT_LE(per_token[t], b) << "token " << t;
}

// The rounding is the CPU's code after a device sort: given the CPU's own A (and its solver's
// figures), the plan and every statistic are the CPU's.
TEST(CudaCapped, RoundingOfTheCpusSolutionIsTheCpusPlan) {
  ECMOE_REQUIRE_GPU();
  for (const CappedShape& s : kShapes) {
    SCOPED_TRACE(name_of(s));
    const MoeConfig config = capped_config(s);
    const std::vector<float> probs = capped_scores(s, 41 + s.n);
    const CpuCapped cpu = cpu_capped(config, probs, s.n, s.capacity);
    const auto groups = routing_groups(s.n, s.group_size);
    std::vector<float> log_plan(size_t(s.n) * s.e);
    std::vector<double> residual;
    std::vector<int> iterations;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const GroupRange& g = groups[gi];
      for (int i = 0; i < s.e; ++i)
        std::copy_n(cpu.solutions[gi].log_plan.begin() + int64_t(i) * g.size, g.size,
                    log_plan.begin() + int64_t(i) * s.n + g.begin);
      residual.push_back(cpu.solutions[gi].residual);
      iterations.push_back(cpu.solutions[gi].iterations);
    }
    CappedScratch scratch;
    scratch.log_plan.upload(std::span<const float>(log_plan), stream());
    scratch.residual.upload(std::span<const double>(residual), stream());
    scratch.iterations.upload(std::span<const int>(iterations), stream());
    DeviceVec<float> gp = to_device(probs);
    DevicePlan dplan;
    const RoutingStats stats =
        round_capped_on_device(dplan, scratch, gp.data(), s.n, config, s.capacity, true, stream());
    const RoutingPlan gpu = download_plan(dplan, stream());
    EXPECT_EQ(gpu.expert_offsets, cpu.route.plan.expert_offsets);
    EXPECT_EQ(gpu.slot_token, cpu.route.plan.slot_token);
    EXPECT_TRUE(same_bits(gpu.slot_gate, cpu.route.plan.slot_gate));
    EXPECT_EQ(gpu.token_offsets, cpu.route.plan.token_offsets);
    EXPECT_EQ(gpu.token_slots, cpu.route.plan.token_slots);
    expect_same_routing_stats(stats, without_entropy(cpu.route.stats));
    EXPECT_EQ(stats.rounding_changes, cpu.route.stats.rounding_changes);
    EXPECT_EQ(stats.solver_residual, cpu.route.stats.solver_residual);
    EXPECT_EQ(stats.solver_iterations, cpu.route.stats.solver_iterations);
  }
}

// The whole route against the CPU's. The solution: the same sweeps (the stopping rule met at
// about the same sweep, or both at the limit with about the same residual), its reported residual
// true of A, columns at most b, A entry by entry and the objective <S, A> near the CPU's. The plan:
// feasible and, on these inputs, the CPU's with its counts (A's small differences decide no pair
// here). And the same bits on a second run.
TEST(CudaCapped, RouteMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (size_t shape = 0; shape < kShapes.size(); ++shape) {
    const CappedShape& s = kShapes[shape];
    if (s.n >= 1000) continue;  // the rounding test has them; the emulation's sweeps take minutes
    SCOPED_TRACE(name_of(s));
    const MoeConfig config = capped_config(s);
    const std::vector<float> probs = capped_scores(s, 47 + s.n);
    const CpuCapped cpu = cpu_capped(config, probs, s.n, s.capacity);
    CappedScratch scratch;
    DeviceVec<float> gp = to_device(probs);
    DevicePlan dplan;
    const RoutingStats stats = route_expert_choice_capped(dplan, scratch, gp.data(), s.n, config,
                                                          s.capacity, true, stream());
    const RoutingPlan gpu = download_plan(dplan, stream());
    const std::vector<float> log_plan = to_host(scratch.log_plan);
    const std::vector<double> residual = to_host(scratch.residual);
    const std::vector<int> iterations = to_host(scratch.iterations);
    const float tol = config.capped.tolerance;
    const auto groups = routing_groups(s.n, s.group_size);
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      SCOPED_TRACE("group " + std::to_string(gi));
      const GroupRange& g = groups[gi];
      const CappedSolution& theirs = cpu.solutions[gi];
      const int k = capped_capacity(g.size, s.e, s.b, s.capacity);
      EXPECT_NEAR(iterations[gi], theirs.iterations, 3);
      if (theirs.residual < tol) {
        EXPECT_LT(residual[gi], tol);
      } else {
        EXPECT_NEAR(residual[gi], theirs.residual, 0.1 * theirs.residual);
      }
      const std::vector<float> mine = group_log_plan(log_plan, s.n, s.e, g);
      double worst_entry = 0, objective = 0, cpu_objective = 0, worst_row = 0;
      std::vector<double> columns(size_t(g.size), 0.0);
      for (int i = 0; i < s.e; ++i) {
        double row = 0;
        for (int t = 0; t < g.size; ++t) {
          const double a = std::exp(double(mine[int64_t(i) * g.size + t]));
          const double b = std::exp(double(theirs.log_plan[int64_t(i) * g.size + t]));
          const double score = probs[int64_t(g.begin + t) * s.e + i];
          row += a;
          columns[t] += a;
          worst_entry = std::max(worst_entry, std::abs(a - b));
          objective += a * score;
          cpu_objective += b * score;
        }
        worst_row = std::max(worst_row, std::abs(row - k) / k);
      }
      EXPECT_NEAR(worst_row, residual[gi], 1e-4 + 1e-3 * residual[gi]);
      for (int t = 0; t < g.size; ++t) EXPECT_LE(columns[t], s.b * (1 + 1e-5)) << "token " << t;
      EXPECT_LT(worst_entry, 0.05);
      EXPECT_NEAR(objective, cpu_objective, 1e-3 * cpu_objective);
    }
    expect_feasible(gpu, config, s.n, s.capacity);
    int64_t differ = 0;
    for (size_t j = 0; j < cpu.route.plan.slot_token.size(); ++j)
      differ += gpu.slot_token[j] != cpu.route.plan.slot_token[j];
    EXPECT_EQ(differ, 0) << "of " << cpu.route.plan.slot_token.size() << " slots";
    if (differ == 0) EXPECT_TRUE(same_bits(gpu.slot_gate, cpu.route.plan.slot_gate));
    expect_same_routing_stats(stats, without_entropy(cpu.route.stats));

    if (shape % 3 == 1) {  // run to run, at a few shapes
      CappedScratch again;
      DevicePlan second;
      const RoutingStats second_stats = route_expert_choice_capped(
          second, again, gp.data(), s.n, config, s.capacity, true, stream());
      EXPECT_EQ(download_plan(second, stream()).slot_token, gpu.slot_token);
      EXPECT_TRUE(same_bits(to_host(again.log_plan), log_plan));
      EXPECT_EQ(second_stats.solver_residual, stats.solver_residual);
    }
  }
}

}  // namespace
}  // namespace ecmoe::cuda::testing
