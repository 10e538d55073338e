// Router dispatch: the configured router, then the statistics every router with scores shares.
#include "core/error.h"
#include "moe/router_entropy.h"
#include "moe/routers.h"

namespace ecmoe {

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

}  // namespace ecmoe
