#include "moe/moe_config.h"

#include "core/error.h"

namespace ecmoe {

namespace {
struct RouterName {
  RouterKind kind;
  const char* name;
};
constexpr RouterName kRouterNames[] = {
    {RouterKind::kExpertChoice, "expert_choice"},
    {RouterKind::kExpertChoiceCapped, "expert_choice_capped"},
    {RouterKind::kTop1, "top1"},
    {RouterKind::kTop2, "top2"},
    {RouterKind::kDense, "dense"},
    {RouterKind::kHash, "hash"},
    {RouterKind::kExpertThreshold, "expert_threshold"},
};
}  // namespace

RouterKind parse_router_kind(const std::string& name) {
  for (const auto& r : kRouterNames)
    if (name == r.name) return r.kind;
  if (name == "ec") return RouterKind::kExpertChoice;
  if (name == "ec_cap" || name == "ec-cap") return RouterKind::kExpertChoiceCapped;
  fail("unknown router '", name,
       "' (expected expert_choice, expert_choice_capped, top1, top2, dense, hash or "
       "expert_threshold)");
}

std::string router_name(RouterKind kind) {
  for (const auto& r : kRouterNames)
    if (kind == r.kind) return r.name;
  return "unknown";
}

bool router_has_weights(RouterKind kind) {
  return kind != RouterKind::kDense && kind != RouterKind::kHash;
}

bool router_is_token_choice(RouterKind kind) {
  return kind == RouterKind::kTop1 || kind == RouterKind::kTop2;
}

bool router_has_cutoffs(RouterKind kind) {
  return kind == RouterKind::kExpertChoice || kind == RouterKind::kExpertThreshold;
}

RouterKind evaluation_router(RouterKind trained, const std::string& name,
                             const std::string& context) {
  const RouterKind router = parse_router_kind(name);
  ECMOE_CHECK(router == trained || (router_has_cutoffs(router) && router_has_cutoffs(trained)),
              context, ": a checkpoint trained with ", router_name(trained),
              " cannot be evaluated with ", router_name(router),
              " (only expert_choice and expert_threshold replace each other)");
  return router;
}

int MoeConfig::expert_count() const { return router == RouterKind::kDense ? 1 : n_experts; }

int MoeConfig::choices_per_token() const {
  if (token_choice_k > 0) return token_choice_k;
  return router == RouterKind::kTop2 ? 2 : 1;
}

void MoeConfig::validate() const {
  ECMOE_CHECK(d_model > 0, "moe: d_model must be positive, got ", d_model);
  ECMOE_CHECK(d_ff > 0, "moe: d_ff must be positive, got ", d_ff);
  ECMOE_CHECK(n_experts > 0, "moe: n_experts must be positive, got ", n_experts);
  ECMOE_CHECK(capacity_factor_train > 0.f, "moe: capacity factor (train) must be > 0, got ",
              capacity_factor_train);
  ECMOE_CHECK(capacity_factor_eval > 0.f, "moe: capacity factor (eval) must be > 0, got ",
              capacity_factor_eval);
  ECMOE_CHECK(group_size >= 0, "moe: group size must be >= 0 (0 = whole batch), got ", group_size);
  ECMOE_CHECK(token_choice_k >= 0 && token_choice_k <= n_experts,
              "moe: token_choice_k must be in [0, n_experts], got ", token_choice_k);
  ECMOE_CHECK(load_balance_weight >= 0.f, "moe: load-balancing weight must be >= 0");
  ECMOE_CHECK(z_loss_weight >= 0.f, "moe: z-loss weight must be >= 0");
  ECMOE_CHECK(jitter >= 0.f && jitter < 1.f, "moe: jitter must be in [0, 1), got ", jitter);
  ECMOE_CHECK(threshold_ema_rate > 0.f && threshold_ema_rate <= 1.f,
              "moe: threshold_ema_rate must be in (0, 1], got ", threshold_ema_rate);
  ECMOE_CHECK(threshold_warmup_steps >= 0, "moe: threshold_warmup_steps must be >= 0, got ",
              threshold_warmup_steps);
  if (router == RouterKind::kExpertChoiceCapped) {
    ECMOE_CHECK(capped.max_experts_per_token >= 1,
                "moe: cap on experts per token must be >= 1, got ", capped.max_experts_per_token);
    ECMOE_CHECK(capped.lambda > 0.f, "moe: capped solver lambda must be > 0");
    ECMOE_CHECK(capped.max_iterations >= 1, "moe: capped solver needs >= 1 iteration");
    ECMOE_CHECK(capped.tolerance > 0.f, "moe: capped solver tolerance must be > 0");
  }
}

MoeConfig default_moe_config(RouterKind kind) {
  MoeConfig c;
  c.router = kind;
  if (router_is_token_choice(kind)) {
    c.capacity_factor_train = 1.25f;
    c.capacity_factor_eval = 2.0f;
    c.load_balance_weight = 0.01f;
  }
  return c;
}

}  // namespace ecmoe
