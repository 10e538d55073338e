// Capped expert choice (EC-CAP): the entropy-regularised transport-like program
//   max <S^T, A> + lambda · H(A)  s.t.  A 1 = k (rows: experts),  A^T 1 <= b (columns: tokens),
//   0 <= A <= 1,
// solved by alternating exact KL (Bregman) projections in the log domain, which is Dykstra's
// method written on the dual potentials:  A[i, t] = min(1, exp((S[t, i] + u[i] + c[t]) / lambda)),
// c <= 0. A row step projects onto {row sum = k, A <= 1}, a column step onto {column sum <= b,
// A <= 1}; each has a closed form (a scaling plus clipping at 1), so the box's Dykstra correction
// is the min itself. With epsilon scaling, lambda starts at max(1, final) and shrinks
// geometrically to its final value over the first half of the sweeps, the second half polishing
// there (the potentials warm-start each stage): plain sweeps at lambda = 1e-3 need thousands.
// Rounding then picks k tokens per expert with at most b experts per token: a greedy pass in
// order of A, then augmenting paths for any expert left short. The cap always holds.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "moe/moe_config.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe {

struct CappedSolution {
  std::vector<float> log_plan;  // [e, g] log A
  double residual = 0;  // worst relative row error |row sum - k| / k (columns hold after every
                        // column step, so their excess is not measured)
  int iterations = 0;
};

// probs [g, e] (one routing group, row stride e) -> the fractional plan A
CappedSolution solve_capped_plan(const float* probs, int g, int e, int k,
                                 const CappedSolverConfig& config);

struct CappedSelection {
  std::vector<std::vector<int>> tokens_of_expert;  // [e][k], group-local indices, ascending
  int64_t rounding_changes = 0;  // picks that differ from the plain per-expert top-k of A
};

// log_plan [e, g], probs [g, e] -> exactly k tokens per expert, at most b experts per token
CappedSelection round_capped_plan(const std::vector<float>& log_plan, const float* probs, int g,
                                  int e, int k, int b);

// round_capped_plan in its parts, so that the GPU's router (cuda/route_expert_choice_capped.h),
// which sorts the pairs on the device, runs the same combinatorial code. Pair j = i · g + t is
// expert i with group-local token t.

// Every pair in the greedy's order: A descending, then the score descending, then j ascending.
std::vector<int> capped_pair_order(const std::vector<float>& log_plan, const float* probs, int g,
                                   int e);

// The pairs in the greedy's order, fetched on demand: fetch(from) gives the pairs from position
// `from` on (at least one while from < e·g; as many as the caller likes).
using CappedPairSource = std::function<std::span<const int>(int64_t from)>;

// The greedy pass over the pairs (stopping once every expert has k), then augmenting paths for
// any expert left short -> taken [e, g], 1 where expert i takes token t.
std::vector<char> capped_assignment(const CappedPairSource& pairs, int g, int e, int k, int b);

// Each expert's plain top-k of A ([e, k] group-local tokens in any order; ties to the lower
// token index), which the rounding's changes are counted against.
std::vector<int> capped_plain_top_k(const std::vector<float>& log_plan, int g, int e, int k);

// taken [e, g] and the plain top-k -> the selection (tokens ascending) and its changes (none
// counted when top_k is empty).
CappedSelection capped_selection(const std::vector<char>& taken, const std::vector<int>& top_k,
                                 int g, int e, int k);

// One routing group's outcome, and the route made from all of them (the plan of the selected
// pairs, gate = score, and the router's statistics): shared by the CPU router and the GPU's
// (which passes no scores, gates 0, and gathers the gates on the device).
struct CappedGroupRoute {
  CappedSelection selection;
  double residual = 0;
  int iterations = 0;
  int k = 0;
};
RouteResult capped_route_result(int n, int e, const float* probs,
                                const std::vector<GroupRange>& groups,
                                const std::vector<CappedGroupRoute>& routes);

// Largest feasible k: e · k <= b · g (every expert full, no token over its cap).
int capped_capacity(int group_tokens, int n_experts, int cap, float capacity_factor);

}  // namespace ecmoe
