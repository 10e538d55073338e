// The statistics of the per-pair routers (dense, hash, expert_threshold): what each reports as
// its capacity and demand, from the plan it made.
#include <algorithm>
#include <cstdint>
#include <utility>

#include "moe/routers.h"

namespace ecmoe {

namespace {

int64_t busiest_expert(const RoutingStats& stats) {
  int64_t busiest = 0;
  for (int64_t c : stats.tokens_per_expert) busiest = std::max(busiest, c);
  return busiest;
}

}  // namespace

RoutingStats per_pair_route_stats(const MoeConfig& config, const RouteRequest& request,
                                  RoutingStats counts) {
  const int n = request.n_tokens, e = config.n_experts;
  RoutingStats stats = std::move(counts);
  switch (config.router) {
    case RouterKind::kDense:
      stats.capacity = n;
      stats.requested_assignments = n;
      stats.max_demand_over_capacity = n ? 1.0 : 0.0;
      break;
    case RouterKind::kHash:
      // Hash routing has no capacity; report the busiest expert against an even share.
      stats.requested_assignments = n;
      stats.capacity = (n + e - 1) / e;
      stats.max_demand_over_capacity =
          stats.capacity ? double(busiest_expert(stats)) / stats.capacity : 0.0;
      break;
    case RouterKind::kExpertThreshold: {
      // Capacity reported as expert choice's k over all n tokens, so demand/capacity shows how
      // far the realised load strays from it.
      const int k = n ? expert_choice_capacity(n, e, request.capacity_factor) : 0;
      stats.capacity = k;
      stats.requested_assignments = stats.assigned_slots();
      stats.max_demand_over_capacity = k ? double(busiest_expert(stats)) / k : 0.0;
      if (n > 0) add_kth_scores(config, request, stats);
      break;
    }
    default:
      break;
  }
  return stats;
}

}  // namespace ecmoe
