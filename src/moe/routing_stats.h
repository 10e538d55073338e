// Routing statistics of one layer call, returned as a value. Counts add up over calls and layers
// (merge), so a training run can report them per step or per evaluation.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "moe/routing_plan.h"

namespace ecmoe {

// How a field combines over calls and layers (RoutingStats::merge) and over ranks
// (reduce_routing_stats): kSum adds (vectors and arrays element-wise, the shorter padded with
// zeros), kMax keeps the larger.
enum class StatReduce { kSum, kMax };
// How a field appears in the metrics (train/metrics.cpp): under its own name, only for capped
// expert choice (a solver ran), or only through a derived value.
enum class StatReport { kAlways, kCapped, kDerived };

// Every field of RoutingStats, declared once: FIELD(type, name, reduce, report), in the order the
// metrics report them; DERIVED(key, member function) places a derived value in that order (an
// empty vector is not reported). The struct, merge, the MPI reduction, the zeroing of global
// routing's copies and the metrics JSON all expand this list.
#define ECMOE_ROUTING_STATS(FIELD, DERIVED)                                                         \
  FIELD(int64_t, tokens, kSum, kAlways)                                                             \
  FIELD(std::vector<int64_t>, tokens_per_expert, kSum, kAlways) /* slots filled per expert */       \
  /* tokens with 0, 1, 2, 3, 4, >4 experts */                                                       \
  FIELD(ecmoe::ExpertsPerTokenHistogram, experts_per_token, kSum, kAlways)                          \
  DERIVED("mean_experts_per_token", mean_experts_per_token)                                         \
  FIELD(int64_t, tokens_without_expert, kSum, kAlways)                                              \
  FIELD(int64_t, requested_assignments, kSum, kDerived) /* token choice: tokens × k; else slots */ \
  FIELD(int64_t, dropped_assignments, kSum, kDerived)   /* token choice: lost to capacity */        \
  DERIVED("dropped_fraction", dropped_fraction)                                                     \
  /* slots per expert in a full routing group (k for expert choice) */                              \
  FIELD(int, capacity, kMax, kAlways)                                                               \
  /* max over experts and groups of demand / capacity */                                            \
  FIELD(double, max_demand_over_capacity, kMax, kAlways)                                            \
  /* sum over tokens of the router's entropy (nats) */                                              \
  FIELD(double, router_entropy_sum, kSum, kDerived)                                                 \
  DERIVED("router_entropy", mean_router_entropy)                                                    \
  /* Expert choice and threshold routing: per expert, the sum over routing groups of the */         \
  /* score of the k-th token expert choice selects in that group, and the number of */              \
  /* groups. Their mean is the target of the threshold cutoffs (docs/causal.md). */                 \
  FIELD(std::vector<double>, kth_score_sum, kSum, kDerived) /* [e] */                               \
  FIELD(int64_t, kth_score_groups, kSum, kDerived)                                                  \
  DERIVED("kth_score", mean_kth_scores)                                                             \
  /* Capped expert choice only. */                                                                  \
  FIELD(int, max_experts_per_token, kMax, kCapped) /* realised maximum over tokens */               \
  /* worst relative row error before rounding (CappedSolution::residual) */                         \
  FIELD(double, solver_residual, kMax, kCapped)                                                     \
  FIELD(int, solver_iterations, kMax, kCapped) /* worst over groups */                              \
  /* slots that differ from the per-expert top-k of A */                                            \
  FIELD(int64_t, rounding_changes, kSum, kCapped)

using ExpertsPerTokenHistogram = std::array<int64_t, 6>;  // a name without a comma, for the list

inline bool is_empty_stat(double) { return false; }
inline bool is_empty_stat(const std::vector<double>& v) { return v.empty(); }

#define ECMOE_STATS_DECLARE(type, name, reduce, report) type name{};
#define ECMOE_STATS_NONE(key, function)
struct RoutingStats {
  ECMOE_ROUTING_STATS(ECMOE_STATS_DECLARE, ECMOE_STATS_NONE)

  double dropped_fraction() const {
    return requested_assignments ? double(dropped_assignments) / requested_assignments : 0.0;
  }
  double mean_router_entropy() const { return tokens ? router_entropy_sum / tokens : 0.0; }
  double mean_experts_per_token() const;
  int64_t assigned_slots() const;               // the sum of tokens_per_expert: the plan's slots
  std::vector<double> mean_kth_scores() const;  // [e], empty without groups
  void merge(const RoutingStats& other);
  // Only the kMax fields kept, the kSum fields zero (vectors keep their lengths): what a rank
  // adds to a reduction when another rank already counts its tokens.
  RoutingStats maxima_only() const;
  // True when capped expert choice's solver ran (its fields are reported).
  bool capped() const { return solver_iterations > 0; }
};

// Calls f(reduce, s.field...) for every field, in list order, with the same field of each of
// the given stats: for_each_routing_stat(f, a) or for_each_routing_stat(f, a, b).
template <class F, class... Stats>
void for_each_routing_stat(F&& f, Stats&... s) {
#define ECMOE_STATS_VISIT(type, name, reduce, report) f(StatReduce::reduce, s.name...);
  ECMOE_ROUTING_STATS(ECMOE_STATS_VISIT, ECMOE_STATS_NONE)
#undef ECMOE_STATS_VISIT
}

// Calls f(key, value) for every reported value, in list order: kAlways fields, kCapped fields
// when capped(), derived values unless an empty vector. For the metrics JSON.
template <class F>
void for_each_reported_stat(const RoutingStats& s, F&& f) {
#define ECMOE_STATS_REPORT(type, name, reduce, report)           \
  if (StatReport::report == StatReport::kAlways ||               \
      (StatReport::report == StatReport::kCapped && s.capped())) \
    f(#name, s.name);
#define ECMOE_STATS_DERIVED(key, function) \
  if (const auto v = s.function(); !is_empty_stat(v)) f(key, v);
  ECMOE_ROUTING_STATS(ECMOE_STATS_REPORT, ECMOE_STATS_DERIVED)
#undef ECMOE_STATS_REPORT
#undef ECMOE_STATS_DERIVED
}
#undef ECMOE_STATS_DECLARE
#undef ECMOE_STATS_NONE

// Fills the plan-derived counts (tokens, per-expert load, experts-per-token histogram, tokens
// without an expert, realised maximum); the other fields are left as they are.
void count_plan(const RoutingPlan& plan, RoutingStats& stats);
// The same counts as a value (every other field zero).
RoutingStats plan_counts(const RoutingPlan& plan);
// The same from what a device counted on its copy of the plan: the expert offsets [e + 1], the
// histogram of the tokens' expert counts (ExpertsPerTokenHistogram's bins) and their maximum.
RoutingStats plan_counts(int n_tokens, const std::vector<int>& expert_offsets,
                         const ExpertsPerTokenHistogram& experts_per_token,
                         int max_experts_per_token);

// The statistics of all ranks, merged (sums and maxima; the same on every rank). A rank's
// tokens_per_expert may be empty or shorter (a rank that saw no tokens) and is padded first.
RoutingStats reduce_routing_stats(const RoutingStats& stats, const dist::Comm& comm);

}  // namespace ecmoe
