// The dense "router": one expert takes every token with gate 1 (the dense FFN as a layer).
#include <vector>

#include "moe/routers.h"

namespace ecmoe {

RouteResult route_dense(const MoeConfig& config, const RouteRequest& request) {
  std::vector<Assignment> assignments(request.n_tokens);
  for (int t = 0; t < request.n_tokens; ++t) assignments[t] = {0, t, 1.f};
  RouteResult r;
  r.plan = make_routing_plan(request.n_tokens, 1, GateKind::kConstant, assignments);
  r.stats = per_pair_route_stats(config, request, plan_counts(r.plan));
  return r;
}

}  // namespace ecmoe
