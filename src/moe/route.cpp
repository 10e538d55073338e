// Router dispatch, capacities, and the two routers without scores (dense, hash).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "moe/router_scores.h"
#include "moe/routers.h"

namespace ecmoe {

int expert_choice_capacity(int group_tokens, int n_experts, float capacity_factor) {
  const long k = std::lround(double(capacity_factor) * group_tokens / n_experts);
  return int(std::clamp<long>(k, 1, std::max(1, group_tokens)));
}

int token_choice_capacity(int group_tokens, int n_experts, int choices, float capacity_factor) {
  const long c = std::lround(double(capacity_factor) * choices * group_tokens / n_experts);
  return int(std::clamp<long>(c, 1, std::max(1, group_tokens)));
}

RouteResult route_tokens(const MoeConfig& config, const RouteRequest& request) {
  ECMOE_CHECK(request.n_tokens >= 0, "route: negative token count");
  ECMOE_CHECK(request.capacity_factor > 0.f, "route: capacity factor must be > 0, got ",
              request.capacity_factor);
  if (router_has_weights(config.router))
    ECMOE_CHECK(request.probs != nullptr || request.n_tokens == 0, "route: router scores missing");
  RouteResult result;
  switch (config.router) {
    case RouterKind::kExpertChoice:
      result = route_expert_choice(config, request);
      break;
    case RouterKind::kExpertChoiceCapped:
      result = route_expert_choice_capped(config, request);
      break;
    case RouterKind::kTop1:
    case RouterKind::kTop2:
      result = route_token_choice(config, request);
      break;
    case RouterKind::kDense:
      result = route_dense(config, request);
      break;
    case RouterKind::kHash:
      result = route_hash(config, request);
      break;
    case RouterKind::kExpertThreshold:
      result = route_expert_threshold(config, request);
      break;
  }
  if (router_has_weights(config.router) && request.n_tokens > 0)
    result.stats.router_entropy_sum =
        router_entropy_sum(request.probs, request.n_tokens, config.n_experts);
  return result;
}

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
