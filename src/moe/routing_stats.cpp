#include "moe/routing_stats.h"

#include <algorithm>
#include <cstddef>

namespace ecmoe {

double RoutingStats::mean_experts_per_token() const {
  int64_t slots = 0;
  for (int64_t c : tokens_per_expert) slots += c;
  return tokens ? double(slots) / tokens : 0.0;
}

std::vector<double> RoutingStats::mean_kth_scores() const {
  std::vector<double> mean;
  if (kth_score_groups == 0) return mean;
  for (double s : kth_score_sum) mean.push_back(s / double(kth_score_groups));
  return mean;
}

void RoutingStats::merge(const RoutingStats& o) {
  tokens += o.tokens;
  if (tokens_per_expert.size() < o.tokens_per_expert.size())
    tokens_per_expert.resize(o.tokens_per_expert.size(), 0);
  for (size_t i = 0; i < o.tokens_per_expert.size(); ++i)
    tokens_per_expert[i] += o.tokens_per_expert[i];
  for (size_t i = 0; i < experts_per_token.size(); ++i)
    experts_per_token[i] += o.experts_per_token[i];
  requested_assignments += o.requested_assignments;
  dropped_assignments += o.dropped_assignments;
  tokens_without_expert += o.tokens_without_expert;
  capacity = std::max(capacity, o.capacity);
  max_demand_over_capacity = std::max(max_demand_over_capacity, o.max_demand_over_capacity);
  router_entropy_sum += o.router_entropy_sum;
  max_experts_per_token = std::max(max_experts_per_token, o.max_experts_per_token);
  solver_residual = std::max(solver_residual, o.solver_residual);
  solver_iterations = std::max(solver_iterations, o.solver_iterations);
  rounding_changes += o.rounding_changes;
  if (kth_score_sum.size() < o.kth_score_sum.size())
    kth_score_sum.resize(o.kth_score_sum.size(), 0.0);
  for (size_t i = 0; i < o.kth_score_sum.size(); ++i) kth_score_sum[i] += o.kth_score_sum[i];
  kth_score_groups += o.kth_score_groups;
}

void count_plan(const RoutingPlan& plan, RoutingStats& stats) {
  stats.tokens = plan.n_tokens;
  stats.tokens_per_expert.assign(plan.n_experts, 0);
  for (int i = 0; i < plan.n_experts; ++i) stats.tokens_per_expert[i] = plan.expert_load(i);
  stats.experts_per_token.fill(0);
  stats.tokens_without_expert = 0;
  stats.max_experts_per_token = 0;
  for (int t = 0; t < plan.n_tokens; ++t) {
    const int count = plan.token_offsets[t + 1] - plan.token_offsets[t];
    ++stats.experts_per_token[std::min(count, 5)];
    if (count == 0) ++stats.tokens_without_expert;
    stats.max_experts_per_token = std::max(stats.max_experts_per_token, count);
  }
}

}  // namespace ecmoe
