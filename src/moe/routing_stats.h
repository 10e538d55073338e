// Routing statistics of one layer call, returned as a value. Counts add up over calls and layers
// (merge), so a training run can report them per step or per evaluation.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "moe/routing_plan.h"

namespace ecmoe {

struct RoutingStats {
  int64_t tokens = 0;
  std::vector<int64_t> tokens_per_expert;      // slots filled per expert
  std::array<int64_t, 6> experts_per_token{};  // tokens with 0, 1, 2, 3, 4, >4 experts
  int64_t requested_assignments = 0;           // token choice: tokens × k; else slots
  int64_t dropped_assignments = 0;             // token choice: choices lost to capacity
  int64_t tokens_without_expert = 0;
  int capacity = 0;                     // slots per expert in a full routing group (k for EC)
  double max_demand_over_capacity = 0;  // max over experts and groups of demand / capacity
  double router_entropy_sum = 0;        // sum over tokens of the router's entropy (nats)
  // Capped expert choice only.
  int max_experts_per_token = 0;  // realised maximum over tokens
  double solver_residual = 0;     // worst relative constraint violation before rounding
  int solver_iterations = 0;      // worst over groups
  int64_t rounding_changes = 0;   // slots that differ from the per-expert top-k of A
  // Expert choice and threshold routing: per expert, the sum over routing groups of the score of
  // the k-th token expert choice selects in that group, and the number of groups. Their mean is
  // the target of the threshold cutoffs (docs/causal.md).
  std::vector<double> kth_score_sum;  // [e]
  int64_t kth_score_groups = 0;

  double dropped_fraction() const {
    return requested_assignments ? double(dropped_assignments) / requested_assignments : 0.0;
  }
  double mean_router_entropy() const { return tokens ? router_entropy_sum / tokens : 0.0; }
  double mean_experts_per_token() const;
  std::vector<double> mean_kth_scores() const;  // [e], empty without groups
  void merge(const RoutingStats& other);
};

// Fills the plan-derived counts (per-expert load, experts-per-token histogram, realised maximum).
void count_plan(const RoutingPlan& plan, RoutingStats& stats);

// The statistics of all ranks, merged (sums and maxima; the same on every rank). A rank's
// tokens_per_expert may be empty or shorter (a rank that saw no tokens) and is padded first.
RoutingStats reduce_routing_stats(const RoutingStats& stats, const dist::Comm& comm);

}  // namespace ecmoe
