// Capped expert choice: per routing group, solve the capped assignment program, round it to k
// tokens per expert with at most b experts per token, gate = score.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/capped_solver.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe {

RouteResult capped_route_result(int n, int e, const float* probs,
                                const std::vector<GroupRange>& groups,
                                const std::vector<CappedGroupRoute>& routes) {
  RouteResult r;
  std::vector<Assignment> assignments;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const CappedGroupRoute& route = routes[gi];
    r.stats.solver_residual = std::max(r.stats.solver_residual, route.residual);
    r.stats.solver_iterations = std::max(r.stats.solver_iterations, route.iterations);
    r.stats.rounding_changes += route.selection.rounding_changes;
    if (gi == 0) r.stats.capacity = route.k;
    for (int i = 0; i < e; ++i)
      for (int t : route.selection.tokens_of_expert[i]) {
        const int token = groups[gi].begin + t;
        assignments.push_back({i, token, probs ? probs[int64_t(token) * e + i] : 0.f});
      }
  }
  // count_plan fills only the plan-derived counts; the solver's figures above stay.
  r.plan = make_routing_plan(n, e, GateKind::kScore, assignments);
  count_plan(r.plan, r.stats);
  r.stats.requested_assignments = r.plan.slot_count();
  r.stats.max_demand_over_capacity = n ? 1.0 : 0.0;
  return r;
}

RouteResult route_expert_choice_capped(const MoeConfig& config, const RouteRequest& request) {
  const int n = request.n_tokens, e = config.n_experts, b = config.capped.max_experts_per_token;
  const auto groups = routing_groups(n, config.group_size);
  std::vector<CappedGroupRoute> routes(groups.size());
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const GroupRange grp = groups[gi];
    const int k = capped_capacity(grp.size, e, b, request.capacity_factor);
    const float* probs = request.probs + int64_t(grp.begin) * e;
    const CappedSolution sol = solve_capped_plan(probs, grp.size, e, k, config.capped);
    routes[gi] = {round_capped_plan(sol.log_plan, probs, grp.size, e, k, b), sol.residual,
                  sol.iterations, k};
  }
  return capped_route_result(n, e, request.probs, groups, routes);
}

}  // namespace ecmoe
