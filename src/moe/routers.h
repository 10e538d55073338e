// Routers: scores in, routing plan and statistics out. Each works per routing group and merges
// the groups into one expert-centric plan (an expert's slots: group 0's, then group 1's, ...).
#pragma once
#include <cstdint>
#include <vector>

#include "moe/moe_config.h"
#include "moe/routing_plan.h"
#include "moe/routing_stats.h"

namespace ecmoe {

struct RouteRequest {
  const float* probs = nullptr;        // [n, e] softmax scores (routers with weights)
  const int32_t* token_ids = nullptr;  // [n] (hash routing)
  int n_tokens = 0;
  float capacity_factor = 2.f;     // train or eval value, chosen by the caller
  const float* cutoffs = nullptr;  // [e] expert_threshold: each expert's score cutoff
};

struct RouteResult {
  RoutingPlan plan;
  RoutingStats stats;
};

RouteResult route_tokens(const MoeConfig& config, const RouteRequest& request);

// k = clamp(round(c · g / e), 1, g): tokens per expert per group under expert choice.
int expert_choice_capacity(int group_tokens, int n_experts, float capacity_factor);
// clamp(round(c · k · g / e), 1, g): slots per expert per group under top-k token choice.
int token_choice_capacity(int group_tokens, int n_experts, int choices, float capacity_factor);

RouteResult route_expert_choice(const MoeConfig& config, const RouteRequest& request);
// Expert choice's statistics from its plan's counts (plan_counts) and each group's k-th scores
// kth [groups, e] (shared by the CPU router and the CUDA one, cuda/route_expert_choice.h).
RoutingStats expert_choice_stats(RoutingStats counts, const std::vector<float>& kth, int group_size,
                                 int n_groups, float capacity_factor);
RouteResult route_expert_choice_capped(const MoeConfig& config, const RouteRequest& request);
RouteResult route_token_choice(const MoeConfig& config, const RouteRequest& request);
// Token choice's statistics from its plan's counts (plan_counts) and what its routing counted:
// the first group's capacity, the requests dropped at capacity and the worst demand over
// capacity (shared by the CPU router and the CUDA one, cuda/route_token_choice.h). Requests are
// tokens × choices.
RoutingStats token_choice_stats(RoutingStats counts, int choices, int capacity, int64_t dropped,
                                double max_demand_over_capacity);
// Per routing group and expert, the score of the k-th token expert choice would select (ties:
// lower index), summed into stats.kth_score_sum over the groups.
void add_kth_scores(const MoeConfig& config, const RouteRequest& request, RoutingStats& stats);
RouteResult route_expert_threshold(const MoeConfig& config, const RouteRequest& request);
// The statistics of the routers that decide each (token, expert) pair on its own (dense, hash,
// expert_threshold) from their plan's counts (plan_counts); expert_threshold also reads the
// request's scores for the k-th scores. Shared by the CPU routers and the CUDA ones
// (cuda/route_mask.h).
RoutingStats per_pair_route_stats(const MoeConfig& config, const RouteRequest& request,
                                  RoutingStats counts);
RouteResult route_dense(const MoeConfig& config, const RouteRequest& request);
RouteResult route_hash(const MoeConfig& config, const RouteRequest& request);

}  // namespace ecmoe
