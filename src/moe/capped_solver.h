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
#include <vector>

#include "moe/moe_config.h"

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

// Largest feasible k: e · k <= b · g (every expert full, no token over its cap).
int capped_capacity(int group_tokens, int n_experts, int cap, float capacity_factor);

}  // namespace ecmoe
