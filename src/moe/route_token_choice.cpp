// Token choice (Switch top-1, GShard top-2, any top-k): each token ranks the experts by score
// (ties: lower expert index) and asks for its first k. Per routing group, all first choices
// are served before any second choice; within a round tokens go in position order, or by
// descending top-1 score with batch-prioritised routing. An expert full at capacity drops the
// request. Gates: the score, or the score over the sum of the token's k chosen scores.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe {

RouteResult route_token_choice(const MoeConfig& config, const RouteRequest& request) {
  const int n = request.n_tokens, e = config.n_experts, k = config.choices_per_token();
  const float* p = request.probs;
  const bool renormalize = config.renormalize_gates && k > 1;

  RouteResult r;
  RoutingPlan& plan = r.plan;
  std::vector<int> choices(int64_t(n) * k);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    std::vector<int> order(e);
    std::iota(order.begin(), order.end(), 0);
    const float* pt = p + int64_t(t) * e;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return pt[a] > pt[b] || (pt[a] == pt[b] && a < b); });
    std::copy(order.begin(), order.begin() + k, choices.begin() + int64_t(t) * k);
  }

  std::vector<Assignment> assignments;
  int64_t dropped = 0;
  double worst_demand = 0;
  const auto groups = routing_groups(n, config.group_size);
  for (const auto& g : groups) {
    const int capacity = token_choice_capacity(g.size, e, k, request.capacity_factor);
    std::vector<int> order(g.size);
    std::iota(order.begin(), order.end(), g.begin);
    if (config.batch_prioritized)
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return p[int64_t(a) * e + choices[int64_t(a) * k]] >
               p[int64_t(b) * e + choices[int64_t(b) * k]];
      });
    std::vector<int> filled(e, 0), demand(e, 0);
    for (int round = 0; round < k; ++round)
      for (int t : order) {
        const int i = choices[int64_t(t) * k + round];
        ++demand[i];
        if (filled[i] == capacity) {
          ++dropped;
          continue;
        }
        ++filled[i];
        float gate = p[int64_t(t) * e + i];
        if (renormalize) {
          float z = 0.f;
          for (int c = 0; c < k; ++c) z += p[int64_t(t) * e + choices[int64_t(t) * k + c]];
          gate /= z;
        }
        assignments.push_back({i, t, gate});
      }
    for (int i = 0; i < e; ++i) worst_demand = std::max(worst_demand, double(demand[i]) / capacity);
  }

  plan = make_routing_plan(n, e, renormalize ? GateKind::kRenormalized : GateKind::kScore,
                           assignments);
  if (renormalize) {
    plan.choices_per_token = k;
    plan.token_choices = std::move(choices);
  }
  r.stats = token_choice_stats(
      plan_counts(plan), k,
      groups.empty() ? 0 : token_choice_capacity(groups[0].size, e, k, request.capacity_factor),
      dropped, worst_demand);
  return r;
}

RoutingStats token_choice_stats(RoutingStats counts, int choices, int capacity, int64_t dropped,
                                double max_demand_over_capacity) {
  RoutingStats stats = std::move(counts);
  stats.capacity = capacity;
  stats.requested_assignments = stats.tokens * choices;
  stats.dropped_assignments = dropped;
  stats.max_demand_over_capacity = max_demand_over_capacity;
  return stats;
}

}  // namespace ecmoe
