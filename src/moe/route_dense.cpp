// The dense "router": one expert takes every token with gate 1 (the dense FFN as a layer).
#include <vector>

#include "moe/routers.h"

namespace ecmoe {

RouteResult route_dense(const MoeConfig&, const RouteRequest& request) {
  std::vector<Assignment> assignments(request.n_tokens);
  for (int t = 0; t < request.n_tokens; ++t) assignments[t] = {0, t, 1.f};
  RouteResult r;
  r.plan = make_routing_plan(request.n_tokens, 1, GateKind::kConstant, assignments);
  count_plan(r.plan, r.stats);
  r.stats.capacity = request.n_tokens;
  r.stats.requested_assignments = request.n_tokens;
  r.stats.max_demand_over_capacity = request.n_tokens ? 1.0 : 0.0;
  return r;
}

}  // namespace ecmoe
