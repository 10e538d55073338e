// Hash routing: expert = token id mod e, gate 1; no scores, no capacity.
#include <algorithm>
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
  count_plan(r.plan, r.stats);
  r.stats.requested_assignments = request.n_tokens;
  // Hash routing has no capacity; report the busiest expert against an even share.
  r.stats.capacity = (request.n_tokens + e - 1) / e;
  int64_t busiest = 0;
  for (int64_t c : r.stats.tokens_per_expert) busiest = std::max(busiest, c);
  r.stats.max_demand_over_capacity = r.stats.capacity ? double(busiest) / r.stats.capacity : 0.0;
  return r;
}

}  // namespace ecmoe
