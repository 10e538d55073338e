// Expert choice: per routing group, each expert takes the k tokens with the highest scores
// (ties: lower token index), gate = score, no renormalisation. Every expert gets exactly k.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe {

RouteResult route_expert_choice(const MoeConfig& config, const RouteRequest& request) {
  const int n = request.n_tokens, e = config.n_experts;
  const auto groups = routing_groups(n, config.group_size);
  // chosen[g][i] lists the tokens expert i takes in group g, in token order.
  std::vector<std::vector<std::vector<int>>> chosen(groups.size(),
                                                    std::vector<std::vector<int>>(e));
  std::vector<float> kth(groups.size() * e);  // [groups, e] score of each expert's k-th token
  RouteResult r;
  const int n_jobs = int(groups.size()) * e;
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < n_jobs; ++job) {
    const GroupRange g = groups[job / e];
    const int i = job % e;
    const int k = expert_choice_capacity(g.size, e, request.capacity_factor);
    std::vector<int> order(g.size);
    std::iota(order.begin(), order.end(), g.begin);
    const float* p = request.probs;
    // A strict total order (score descending, then index ascending): the selection is unique.
    auto better = [&](int a, int b) {
      const float sa = p[int64_t(a) * e + i], sb = p[int64_t(b) * e + i];
      return sa > sb || (sa == sb && a < b);
    };
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), better);
    kth[job] = p[int64_t(order[k - 1]) * e + i];
    order.resize(k);
    std::sort(order.begin(), order.end());
    chosen[job / e][i] = std::move(order);
  }
  std::vector<Assignment> assignments;
  for (size_t gi = 0; gi < groups.size(); ++gi)
    for (int i = 0; i < e; ++i)
      for (int t : chosen[gi][i]) assignments.push_back({i, t, request.probs[int64_t(t) * e + i]});
  r.plan = make_routing_plan(n, e, GateKind::kScore, assignments);
  r.stats = expert_choice_stats(plan_counts(r.plan), kth, groups.empty() ? 0 : groups[0].size,
                                int(groups.size()), request.capacity_factor);
  return r;
}

RoutingStats expert_choice_stats(RoutingStats counts, const std::vector<float>& kth, int group_size,
                                 int n_groups, float capacity_factor) {
  RoutingStats stats = std::move(counts);
  const int e = int(stats.tokens_per_expert.size());
  stats.capacity = n_groups == 0 ? 0 : expert_choice_capacity(group_size, e, capacity_factor);
  stats.requested_assignments = stats.assigned_slots();
  stats.max_demand_over_capacity = stats.tokens ? 1.0 : 0.0;
  // Summed over groups in group order: the same value at any thread count.
  stats.kth_score_sum.assign(e, 0.0);
  for (int g = 0; g < n_groups; ++g)
    for (int i = 0; i < e; ++i) stats.kth_score_sum[i] += kth[size_t(g) * e + i];
  stats.kth_score_groups = n_groups;
  return stats;
}

}  // namespace ecmoe
