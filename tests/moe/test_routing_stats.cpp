// RoutingStats is declared once (ECMOE_ROUTING_STATS); merge, the zeroing of global routing's
// copies and the reported values are derived from that list. These pin what the hand-written
// versions did: sums add, maxima take the larger, and the metrics keys and their order.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/routing_plan.h"
#include "moe/routing_stats.h"

using namespace ecmoe;

namespace {

RoutingStats sample(int64_t base) {
  RoutingStats s;
  s.tokens = 10 * base;
  s.tokens_per_expert = {base, 2 * base, 3 * base};
  s.experts_per_token = {base, 0, 2 * base, 0, 0, 1};
  s.tokens_without_expert = base;
  s.requested_assignments = 8 * base;
  s.dropped_assignments = base;
  s.capacity = int(4 + base);
  s.max_demand_over_capacity = 1.0 + 0.1 * double(base);
  s.router_entropy_sum = 2.5 * double(base);
  s.kth_score_sum = {0.5 * double(base), 0.25};
  s.kth_score_groups = base;
  s.max_experts_per_token = int(base);
  s.solver_residual = 0.01 * double(base);
  s.solver_iterations = int(3 * base);
  s.rounding_changes = 7 * base;
  return s;
}

std::vector<std::string> reported_keys(const RoutingStats& s) {
  std::vector<std::string> keys;
  for_each_reported_stat(s, [&](const char* key, const auto&) { keys.push_back(key); });
  return keys;
}

}  // namespace

TEST(RoutingStats, MergeAddsSumsAndKeepsMaxima) {
  RoutingStats a = sample(1);
  a.tokens_per_expert.pop_back();  // a shorter vector is padded
  const RoutingStats b = sample(2);
  a.merge(b);
  EXPECT_EQ(a.tokens, 30);
  EXPECT_EQ(a.tokens_per_expert, (std::vector<int64_t>{3, 6, 6}));
  EXPECT_EQ(a.experts_per_token, (ExpertsPerTokenHistogram{3, 0, 6, 0, 0, 2}));
  EXPECT_EQ(a.tokens_without_expert, 3);
  EXPECT_EQ(a.requested_assignments, 24);
  EXPECT_EQ(a.dropped_assignments, 3);
  EXPECT_EQ(a.capacity, 6);
  EXPECT_DOUBLE_EQ(a.max_demand_over_capacity, 1.2);
  EXPECT_DOUBLE_EQ(a.router_entropy_sum, 7.5);
  EXPECT_EQ(a.kth_score_sum, (std::vector<double>{1.5, 0.5}));
  EXPECT_EQ(a.kth_score_groups, 3);
  EXPECT_EQ(a.max_experts_per_token, 2);
  EXPECT_DOUBLE_EQ(a.solver_residual, 0.02);
  EXPECT_EQ(a.solver_iterations, 6);
  EXPECT_EQ(a.rounding_changes, 21);
}

TEST(RoutingStats, MaximaOnlyZeroesEveryCount) {
  const RoutingStats s = sample(3).maxima_only();
  EXPECT_EQ(s.tokens, 0);
  EXPECT_EQ(s.tokens_per_expert, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(s.experts_per_token, ExpertsPerTokenHistogram{});
  EXPECT_EQ(s.tokens_without_expert + s.requested_assignments + s.dropped_assignments, 0);
  EXPECT_EQ(s.router_entropy_sum, 0.0);
  EXPECT_EQ(s.kth_score_groups + s.rounding_changes, 0);
  EXPECT_EQ(s.capacity, 7);
  EXPECT_DOUBLE_EQ(s.max_demand_over_capacity, 1.3);
  EXPECT_EQ(s.max_experts_per_token, 3);
  EXPECT_DOUBLE_EQ(s.solver_residual, 0.03);
  EXPECT_EQ(s.solver_iterations, 9);
  // Merged into another rank's stats, it adds nothing and changes no maximum.
  RoutingStats whole = sample(3);
  whole.merge(s);
  EXPECT_EQ(whole.tokens, 30);
  EXPECT_EQ(whole.rounding_changes, 21);
}

TEST(RoutingStats, ReportedKeysInTheMetricsOrder) {
  // The keys train/metrics.cpp wrote by hand before the list: capped solver fields only when the
  // solver ran, kth_score only with groups.
  EXPECT_EQ(reported_keys(sample(1)),
            (std::vector<std::string>{"tokens", "tokens_per_expert", "experts_per_token",
                                      "mean_experts_per_token", "tokens_without_expert",
                                      "dropped_fraction", "capacity", "max_demand_over_capacity",
                                      "router_entropy", "kth_score", "max_experts_per_token",
                                      "solver_residual", "solver_iterations", "rounding_changes"}));
  RoutingStats plain = sample(1);
  plain.solver_iterations = 0;
  plain.kth_score_groups = 0;
  EXPECT_EQ(reported_keys(plain),
            (std::vector<std::string>{"tokens", "tokens_per_expert", "experts_per_token",
                                      "mean_experts_per_token", "tokens_without_expert",
                                      "dropped_fraction", "capacity", "max_demand_over_capacity",
                                      "router_entropy"}));
  // Derived values are the member functions' values.
  double entropy = -1;
  for_each_reported_stat(plain, [&](const char* key, const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>)
      if (std::string(key) == "router_entropy") entropy = v;
  });
  EXPECT_DOUBLE_EQ(entropy, plain.mean_router_entropy());
}

// plan_counts from what a device counts (expert offsets, the histogram and maximum of experts per
// token) gives count_plan's fields: on a plan with tokens of 0, 1, 2 and 7 experts, and empty.
TEST(RoutingStats, PlanCountsFromADevicesCountsAreCountPlans) {
  std::vector<Assignment> pairs = {{0, 1, 1.f}, {1, 1, 1.f}, {2, 2, 1.f}};
  for (int i = 0; i < 7; ++i) pairs.push_back({i, 3, 1.f});
  const RoutingPlan plan = make_routing_plan(5, 8, GateKind::kConstant, pairs);
  RoutingStats counted = sample(2);  // count_plan leaves the other fields as they are
  count_plan(plan, counted);
  const RoutingStats from_plan = plan_counts(plan);
  const ExpertsPerTokenHistogram histogram = {2, 1, 1, 0, 0, 1};
  const RoutingStats from_device = plan_counts(5, plan.expert_offsets, histogram, 7);
  for (const RoutingStats* s : {&from_plan, &from_device}) {
    EXPECT_EQ(s->tokens, 5);
    EXPECT_EQ(s->tokens_per_expert, (std::vector<int64_t>{2, 2, 2, 1, 1, 1, 1, 0}));
    EXPECT_EQ(s->experts_per_token, histogram);
    EXPECT_EQ(s->tokens_without_expert, 2);
    EXPECT_EQ(s->max_experts_per_token, 7);
    EXPECT_EQ(s->assigned_slots(), 10);
    EXPECT_EQ(s->tokens_per_expert, counted.tokens_per_expert);
    EXPECT_EQ(s->experts_per_token, counted.experts_per_token);
    EXPECT_EQ(s->capacity, 0);  // plan_counts: every other field zero
  }
  EXPECT_EQ(counted.capacity, sample(2).capacity);
  const RoutingStats empty = plan_counts(make_routing_plan(0, 3, GateKind::kConstant, {}));
  EXPECT_EQ(empty.tokens, 0);
  EXPECT_EQ(empty.tokens_per_expert, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(empty.max_experts_per_token, 0);
}

// The runs of consecutive experts with slots, which a bf16 layer converts.
TEST(RoutingPlan, ExpertsWithSlotsAreTheRunsOfBusyExperts) {
  auto runs = [](const std::vector<int>& offsets) {
    std::vector<std::pair<int, int>> out;
    for (const ExpertRange& r : experts_with_slots(offsets)) out.emplace_back(r.begin, r.end);
    return out;
  };
  using Runs = std::vector<std::pair<int, int>>;
  EXPECT_EQ(runs({0, 2, 4, 6}), (Runs{{0, 3}}));
  EXPECT_EQ(runs({0, 0, 3, 3, 3, 5, 6, 6}), (Runs{{1, 2}, {4, 6}}));
  EXPECT_EQ(runs({0, 0, 0}), Runs{});
  EXPECT_EQ(runs({}), Runs{});
}
