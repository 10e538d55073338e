// Hash routing: expert = token id mod e, gate 1; no scores, no capacity.
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "moe/routers.h"

namespace ecmoe {

RouteResult route_hash(const MoeConfig& config, const RouteRequest& request) {
  const int e = config.n_experts;
  ECMOE_CHECK(request.token_ids != nullptr || request.n_tokens == 0,
              "hash routing needs token ids");
  std::vector<Assignment> assignments(request.n_tokens);
  for (int t = 0; t < request.n_tokens; ++t) {
    ECMOE_CHECK(request.token_ids[t] >= 0, "hash routing: negative token id ", request.token_ids[t],
                " at position ", t);
    assignments[t] = {request.token_ids[t] % e, t, 1.f};
  }
  RouteResult r;
  r.plan = make_routing_plan(request.n_tokens, e, GateKind::kConstant, assignments);
  r.stats = per_pair_route_stats(config, request, plan_counts(r.plan));
  return r;
}

}  // namespace ecmoe
