#include "moe/moe_layer.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "moe/gate_backward.h"
#include "moe/router_entropy.h"
#include "moe/router_logits.h"
#include "moe/softmax_rows.h"

namespace ecmoe {

void declare_moe_params(TensorTable& table, const std::string& prefix, const MoeConfig& config,
                        ExpertShard shard) {
  config.validate();
  const int64_t d = config.d_model, f = config.d_ff, e = config.expert_count();
  if (router_has_weights(config.router)) table.add(prefix + "router.weight", {d, e});
  if (!shard.split()) {
    table.add(prefix + "experts.w1", {e, d, f});
    table.add(prefix + "experts.w2", {e, f, d});
    return;
  }
  const int64_t owned = e / shard.ranks, first = owned * shard.rank;
  table.add_shard(prefix + "experts.w1", {e, d, f}, first, owned);
  table.add_shard(prefix + "experts.w2", {e, f, d}, first, owned);
}

MoeWeights moe_weights(const FlatBuffer& params, const std::string& prefix,
                       const MoeConfig& config) {
  MoeWeights w;
  if (router_has_weights(config.router)) w.router = params.get(prefix + "router.weight");
  w.w1 = params.get(prefix + "experts.w1");
  w.w2 = params.get(prefix + "experts.w2");
  return w;
}

MoeGrads moe_grads(FlatBuffer& grads, const std::string& prefix, const MoeConfig& config) {
  MoeGrads g;
  if (router_has_weights(config.router)) g.router = grads.get(prefix + "router.weight");
  g.w1 = grads.get(prefix + "experts.w1");
  g.w2 = grads.get(prefix + "experts.w2");
  return g;
}

void init_moe_params(FlatBuffer& params, const std::string& prefix, const MoeConfig& config,
                     uint64_t seed, float router_std) {
  // A shard draws the values of its rows of the whole tensor (counter-based stream).
  auto fill = [&](const std::string& name, float std, uint64_t stream) {
    auto v = params.view(name);
    const uint64_t first = uint64_t(params.table().spec(name).shard_offset());
    const Rng rng(seed, stream);
    for (size_t j = 0; j < v.size(); ++j) v[j] = std * rng.normal(first + j);
  };
  const uint64_t base = streams::moe_tensor(prefix);
  if (router_has_weights(config.router)) fill(prefix + "router.weight", router_std, base + 1);
  fill(prefix + "experts.w1", 1.f / std::sqrt(float(config.d_model)), base + 2);
  fill(prefix + "experts.w2", 1.f / std::sqrt(float(config.d_ff)), base + 3);
}

MoeConfig routing_config(const MoeConfig& config, const MoeInput& in) {
  MoeConfig routing = config;
  if (in.router) {
    ECMOE_CHECK(router_has_weights(*in.router) == router_has_weights(config.router),
                "moe forward: a ", router_name(config.router), " layer cannot route by ",
                router_name(*in.router), " (their weights differ)");
    routing.router = *in.router;
  }
  return routing;
}

MoeLayer::MoeLayer(const MoeConfig& config) : config_(config) { config_.validate(); }

void MoeLayer::set_backend(std::unique_ptr<MoeBackend> backend) {
  ECMOE_CHECK(!backend || !comm_, "moe: expert parallelism runs on the CPU only");
  backend_ = std::move(backend);
  backward_ready_ = false;
  if (backend_) backend_->set_phase_times(times_);
}

void MoeLayer::set_phase_times(PhaseTimes* times) {
  times_ = times;
  if (backend_) backend_->set_phase_times(times);
}

void MoeLayer::compute_scores(const MoeWeights& w, const MoeInput& in) {
  ECMOE_CHECK(in.n_tokens >= 0 && (in.x != nullptr || in.n_tokens == 0),
              "moe forward: input missing");
  noise_.clear();
  if (!router_has_weights(config_.router)) return;
  ECMOE_CHECK(w.router != nullptr, "moe forward: router weights missing");
  const int n = in.n_tokens, d = config_.d_model, e = config_.n_experts;
  const float* router_x = in.x;
  if (in.training && config_.jitter > 0.f) {
    router_input_.resize(int64_t(n) * d);
    noise_.resize(int64_t(n) * d);
    const Rng rng(in.seed, streams::kRouterJitter);
    const uint64_t first = uint64_t(in.first_token) * uint64_t(d);
    for (int64_t j = 0; j < int64_t(n) * d; ++j) {
      noise_[j] = 1.f + config_.jitter * (2.f * rng.uniform(first + uint64_t(j)) - 1.f);
      router_input_[j] = in.x[j] * noise_[j];
    }
    router_x = router_input_.data();
  }
  logits_.resize(int64_t(n) * e);
  probs_.resize(int64_t(n) * e);
  router_logits_forward(logits_.data(), router_x, w.router, n, d, e);
  softmax_rows_forward(probs_.data(), logits_.data(), n, e);
}

MoeOutput MoeLayer::forward(const MoeWeights& w, const MoeInput& in, float* y) {
  MoeOutput out = forward_async(w, in, y);
  finish(out);
  return out;
}

void MoeLayer::finish(MoeOutput& out) {
  if (backend_) backend_->finish(out);
}

MoeOutput MoeLayer::forward_async(const MoeWeights& w, const MoeInput& in, float* y) {
  if (backend_) {
    MoeOutput out = backend_->forward(config_, w, in, y);
    backward_ready_ = true;
    return out;
  }
  phase_start(times_);
  compute_scores(w, in);
  phase_lap(times_, "router");
  RouteRequest request;
  request.probs = probs_.data();
  request.token_ids = in.token_ids;
  request.n_tokens = in.n_tokens;
  request.cutoffs = in.cutoffs;
  request.capacity_factor =
      in.training ? config_.capacity_factor_train : config_.capacity_factor_eval;
  const MoeConfig routing = routing_config(config_, in);
  RouteResult routed = comm_ && config_.global_routing ? route_global(routing, request)
                                                       : route_tokens(routing, request);
  phase_lap(times_, "routing");
  MoeOutput out;
  out.aux = run_experts(w, in, std::move(routed.plan), y);
  out.stats = std::move(routed.stats);
  return out;
}

MoeOutput MoeLayer::forward_with_plan(const MoeWeights& w, const MoeInput& in, RoutingPlan plan,
                                      float* y) {
  ECMOE_CHECK(!backend_, "moe forward_with_plan: CPU only");
  compute_scores(w, in);
  MoeOutput out;
  out.aux = run_experts(w, in, std::move(plan), y);
  count_plan(plan_, out.stats);
  if (router_has_weights(config_.router) && in.n_tokens > 0)
    out.stats.router_entropy_sum =
        router_entropy_sum(probs_.data(), in.n_tokens, config_.n_experts);
  return out;
}

AuxLosses MoeLayer::run_experts(const MoeWeights& w, const MoeInput& in, RoutingPlan plan,
                                float* y) {
  const int n = in.n_tokens, e = config_.expert_count();
  ECMOE_CHECK(plan.n_tokens == n && plan.n_experts == e, "moe forward: plan is for ", plan.n_tokens,
              " tokens and ", plan.n_experts, " experts, input has ", n, " tokens and ", e,
              " experts");
  x_ = in.x;
  n_ = n;
  plan_ = std::move(plan);
  if (comm_)
    experts_forward_parallel(w, in.x, y, in.residual);
  else
    experts_forward(y, act_, plan_, in.x, w.w1, w.w2, config_.d_model, config_.d_ff,
                    config_.precision, times_, in.residual);
  backward_ready_ = true;
  if (!router_has_weights(config_.router) || n == 0) return {};
  phase_start(times_);
  const AuxLosses aux = aux_losses_forward(logits_.data(), probs_.data(), n, e, config_.group_size,
                                           {config_.load_balance_weight, config_.z_loss_weight});
  phase_lap(times_, "aux losses");
  return aux;
}

void MoeLayer::backward(const MoeWeights& w, MoeGrads& g, const float* dy, float* dx,
                        float aux_scale, nn::GradWrite dx_write) {
  ECMOE_CHECK(backward_ready_, "moe backward called without a forward");
  if (backend_) {
    backend_->backward(config_, w, g, dy, dx, aux_scale, dx_write);
    return;
  }
  const int n = n_, d = config_.d_model, e = config_.expert_count();
  // On the CPU: zeros, then the adding below (the bits of a caller's zero fill).
  if (dx_write == nn::GradWrite::kOverwrite) std::fill_n(dx, std::size_t(n) * std::size_t(d), 0.f);
  std::vector<float> dgate(plan_.slot_count());
  if (comm_)
    experts_backward_parallel(w, g, dy, dx, dgate.data());
  else
    experts_backward(dx, g.w1, g.w2, dgate.data(), scratch_, dy, act_, plan_, w.w1, w.w2, d,
                     config_.d_ff, config_.precision, times_);
  if (!router_has_weights(config_.router) || n == 0) return;
  phase_start(times_);

  std::vector<float> dprobs(int64_t(n) * e, 0.f), dlogits(int64_t(n) * e, 0.f);
  gate_backward(dprobs.data(), plan_, probs_.data(), dgate.data());
  const AuxLossWeights weights{aux_scale * config_.load_balance_weight,
                               aux_scale * config_.z_loss_weight};
  aux_losses_backward(dlogits.data(), dprobs.data(), logits_.data(), probs_.data(), n, e,
                      config_.group_size, weights);
  softmax_rows_backward(dlogits.data(), dprobs.data(), probs_.data(), n, e);
  if (noise_.empty()) {
    router_logits_backward(dx, g.router, dlogits.data(), x_, w.router, n, d, e);
  } else {
    // Through the jitter: router input = x * noise, so dx += (dlogits · Wg^T) * noise.
    std::vector<float> dx_router(int64_t(n) * d, 0.f);
    router_logits_backward(dx_router.data(), g.router, dlogits.data(), router_input_.data(),
                           w.router, n, d, e);
    for (int64_t j = 0; j < int64_t(n) * d; ++j) dx[j] += dx_router[j] * noise_[j];
  }
  phase_lap(times_, "router backward");
}

}  // namespace ecmoe
