#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "moe/routing_stats.h"

namespace ecmoe {

RoutingStats reduce_routing_stats(const RoutingStats& stats, const dist::Comm& comm) {
  if (!comm.parallel()) return stats;
  RoutingStats r = stats;
  const int experts = int(comm.allreduce_max(double(stats.tokens_per_expert.size())));
  r.tokens_per_expert.resize(experts, 0);
  // Integer counts in one buffer: tokens, per-expert loads, histogram, assignments, changes.
  std::vector<int64_t> counts{r.tokens, r.requested_assignments, r.dropped_assignments,
                              r.tokens_without_expert, r.rounding_changes};
  counts.insert(counts.end(), r.tokens_per_expert.begin(), r.tokens_per_expert.end());
  counts.insert(counts.end(), r.experts_per_token.begin(), r.experts_per_token.end());
  comm.allreduce_sum(counts);
  r.tokens = counts[0];
  r.requested_assignments = counts[1];
  r.dropped_assignments = counts[2];
  r.tokens_without_expert = counts[3];
  r.rounding_changes = counts[4];
  std::copy_n(counts.begin() + 5, experts, r.tokens_per_expert.begin());
  std::copy_n(counts.begin() + 5 + experts, r.experts_per_token.size(),
              r.experts_per_token.begin());
  double entropy = r.router_entropy_sum;
  comm.allreduce_sum(std::span<double>(&entropy, 1));
  r.router_entropy_sum = entropy;
  // The k-th selected scores behind the threshold cutoffs: summed over every rank's groups, so
  // each rank moves its cutoffs by the same mean (a rank without groups adds zeros).
  std::vector<double> kth(size_t(experts), 0.0);
  std::copy_n(r.kth_score_sum.begin(), std::min(r.kth_score_sum.size(), kth.size()), kth.begin());
  kth.push_back(double(r.kth_score_groups));
  comm.allreduce_sum(std::span<double>(kth));
  r.kth_score_groups = int64_t(kth.back());
  kth.pop_back();
  if (r.kth_score_groups > 0) r.kth_score_sum = kth;
  else r.kth_score_sum.clear();
  r.capacity = int(comm.allreduce_max(r.capacity));
  r.max_demand_over_capacity = comm.allreduce_max(r.max_demand_over_capacity);
  r.max_experts_per_token = int(comm.allreduce_max(r.max_experts_per_token));
  r.solver_residual = comm.allreduce_max(r.solver_residual);
  r.solver_iterations = int(comm.allreduce_max(r.solver_iterations));
  return r;
}

}  // namespace ecmoe
