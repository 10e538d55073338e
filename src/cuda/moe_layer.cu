#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/phase_times.h"
#include "cuda/aux_losses.h"
#include "cuda/context.h"
#include "cuda/expert_gemm.h"
#include "cuda/experts.h"
#include "cuda/moe_layer.h"
#include "cuda/moe_ops.h"
#include "cuda/readback.h"
#include "cuda/route_expert_choice.h"
#include "cuda/route_expert_choice_capped.h"
#include "cuda/route_mask.h"
#include "cuda/route_token_choice.h"
#include "moe/aux_losses.h"
#include "moe/moe_layer.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe::cuda {

namespace {

class CudaMoeBackend final : public MoeBackend {
 public:
  CudaMoeBackend() : ctx_(context()) {}
  const char* device() const override { return "cuda"; }
  MoeOutput forward(const MoeConfig& config, const MoeWeights& w, const MoeInput& in,
                    float* y) override;
  void backward(const MoeConfig& config, const MoeWeights& w, MoeGrads& g, const float* dy,
                float* dx, float aux_scale, nn::GradWrite dx_write) override;
  void finish(MoeOutput& out) override;
  const RoutingPlan& host_plan() override;
  void set_collect_stats(bool collect) override { collect_stats_ = collect; }
  void set_phase_times(PhaseTimes* times) override { times_ = times; }

 private:
  Context& ctx_;
  DevicePlan plan_;
  ExpertChoiceScratch ec_scratch_;
  CappedScratch capped_scratch_;
  TokenChoiceScratch tc_scratch_;
  MaskRouteScratch mask_scratch_;
  DeviceExpertActivations act_;
  DeviceExpertScratch scratch_;
  DeviceVec<float> logits_, probs_, router_x_, noise_, dgate_, dprobs_, dlogits_, dx_router_;
  const float* x_ = nullptr;  // saved by forward (device)
  int n_ = 0;
  bool jittered_ = false;
  AuxScratch aux_;
  bool aux_ready_ = false;         // forward computed the aux losses (aux_ holds their state)
  std::vector<float> host_probs_;  // [n, e]: this forward's copy, when the host needs the scores
  // What finish() completes the last forward's output from: the routing statistics made from
  // the plan's counts on the device (kind), the auxiliary losses from their sums.
  enum class DeviceStats { kNone, kExpertChoice, kTokenChoice, kPerPair };
  struct Pending {
    bool valid = false;
    DeviceStats stats = DeviceStats::kNone;
    bool aux = false, entropy = false;
    MoeConfig routing;
    RouteRequest request;  // n, the capacity factor and the host's scores (threshold's k-th)
    TokenChoiceCounts token_choice;
    std::size_t counts_at = 0, kth_at = 0, totals_at = 0;  // Readback offsets
    AuxLossWeights weights;
  };
  Pending pending_;
  Readback readback_;
  DeviceVec<int64_t> plan_counts_;
  RoutingPlan host_plan_;
  bool host_plan_valid_ = false;
  bool collect_stats_ = true;
  PhaseTimes* times_ = nullptr;
};

MoeOutput CudaMoeBackend::forward(const MoeConfig& config, const MoeWeights& w, const MoeInput& in,
                                  float* y) {
  ECMOE_CHECK(in.n_tokens >= 0 && (in.x != nullptr || in.n_tokens == 0),
              "moe forward: input missing");
  const int n = in.n_tokens, d = config.d_model, f = config.d_ff, e = config.n_experts;
  cudaStream_t stream = ctx_.stream;
  phase_start(times_, ctx_);
  x_ = in.x;
  n_ = n;
  host_plan_valid_ = false;
  jittered_ = false;
  const MoeConfig routing = routing_config(config, in);
  const bool scored = router_has_weights(config.router);
  if (scored) {
    ECMOE_CHECK(w.router != nullptr, "moe forward: router weights missing");
    const float* router_x = in.x;
    if (in.training && config.jitter > 0.f) {
      router_x_.resize(size_t(n) * d);
      noise_.resize(size_t(n) * d);
      router_jitter(router_x_.data(), noise_.data(), in.x, int64_t(n) * d, in.seed,
                    uint64_t(in.first_token) * uint64_t(d), config.jitter, stream);
      router_x = router_x_.data();
      jittered_ = true;
    }
    logits_.resize(size_t(n) * e);
    probs_.resize(size_t(n) * e);
    Gemm g;
    g.m = n;
    g.n = e;
    g.k = d;
    g.a = router_x;
    g.b = w.router;
    g.c = logits_.data();
    gemm(ctx_.blas, g, Precision::kFp32);
    softmax_rows_forward(probs_.data(), logits_.data(), n, e, stream);
  }
  phase_lap(times_, ctx_, "router");

  const float capacity = in.training ? config.capacity_factor_train : config.capacity_factor_eval;
  MoeOutput out;
  const bool token_choice =
      routing.router == RouterKind::kTop1 || routing.router == RouterKind::kTop2;
  const bool per_pair = routing.router == RouterKind::kDense ||
                        routing.router == RouterKind::kHash ||
                        routing.router == RouterKind::kExpertThreshold;
  const bool capped = routing.router == RouterKind::kExpertChoiceCapped;
  const bool weighted = config.load_balance_weight != 0.f || config.z_loss_weight != 0.f;
  // The scores go to the host only where the host reads them: the k-th scores of threshold
  // routing's statistics. The auxiliary losses and the router's entropy are summed on the device
  // (cuda/aux_losses.h).
  host_probs_.clear();
  if (scored && n > 0 && collect_stats_ && routing.router == RouterKind::kExpertThreshold)
    host_probs_ = probs_.download(stream);
  RouteRequest request;
  request.probs = host_probs_.empty() ? nullptr : host_probs_.data();
  request.token_ids = in.token_ids;
  request.n_tokens = n;
  request.capacity_factor = capacity;
  request.cutoffs = in.cutoffs;
  pending_ = Pending{};
  pending_.routing = routing;
  pending_.request = request;
  pending_.request.token_ids = nullptr;  // the caller's: finish() may come after they are gone
  pending_.request.cutoffs = nullptr;
  ECMOE_CHECK(capacity > 0.f, "route: capacity factor must be > 0, got ", capacity);
  if (token_choice) {
    pending_.token_choice =
        route_token_choice(plan_, tc_scratch_, probs_.data(), n, routing, capacity, stream);
    pending_.stats = DeviceStats::kTokenChoice;
  } else if (per_pair) {
    route_mask(plan_, mask_scratch_, scored ? probs_.data() : nullptr, in.token_ids, in.cutoffs, n,
               routing, stream);
    pending_.stats = DeviceStats::kPerPair;
  } else if (capped) {
    // The solver on the device, the greedy pass on the host (one wait): its statistics now.
    const RoutingStats stats = route_expert_choice_capped(
        plan_, capped_scratch_, probs_.data(), n, routing, capacity, collect_stats_, stream);
    if (collect_stats_) out.stats = stats;
  } else {
    route_expert_choice(plan_, ec_scratch_, probs_.data(), n, routing, capacity, stream);
    pending_.stats = DeviceStats::kExpertChoice;
  }
  if (!collect_stats_) pending_.stats = DeviceStats::kNone;
  phase_lap(times_, ctx_, "routing");

  experts_forward(y, act_, plan_, in.x, w.w1, w.w2, d, f, config.precision, ctx_, times_,
                  in.residual);
  aux_ready_ = scored && n > 0 && (weighted || collect_stats_);
  if (aux_ready_) {
    aux_losses_forward(logits_.data(), probs_.data(), n, e, config.group_size, aux_, stream);
    phase_lap(times_, ctx_, "aux losses");
  }

  // The few values finish() needs, copied to the host together once the device has them.
  const std::size_t kth_count =
      pending_.stats == DeviceStats::kExpertChoice ? ec_scratch_.kth.size() : 0;
  readback_.begin(kPlanCounts * sizeof(int64_t) + kth_count * sizeof(float) + 3 * sizeof(double) +
                  3 * 16);
  if (pending_.stats != DeviceStats::kNone) {
    count_plan_on_device(plan_, plan_counts_, stream);
    pending_.counts_at = readback_.add(plan_counts_.data(), kPlanCounts, stream);
  }
  if (kth_count > 0) pending_.kth_at = readback_.add(ec_scratch_.kth.data(), kth_count, stream);
  if (aux_ready_) {
    pending_.aux = true;
    // The router's entropy: the device's sum, for every router (capped expert choice's host part
    // counts none).
    pending_.entropy = collect_stats_;
    pending_.weights = {config.load_balance_weight, config.z_loss_weight};
    pending_.totals_at = readback_.add(aux_.totals.data(), 3, stream);
  }
  readback_.record(stream);
  pending_.valid = true;
  return out;
}

void CudaMoeBackend::backward(const MoeConfig& config, const MoeWeights& w, MoeGrads& g,
                              const float* dy, float* dx, float aux_scale, nn::GradWrite dx_write) {
  const int n = n_, d = config.d_model, f = config.d_ff, e = config.n_experts;
  const int S = plan_.slot_count();
  cudaStream_t stream = ctx_.stream;
  phase_start(times_, ctx_);
  dgate_.resize(S);
  experts_backward(dx, g.w1, g.w2, dgate_.data(), scratch_, dy, act_, plan_, w.w1, w.w2, d, f, ctx_,
                   times_, dx_write);
  if (!router_has_weights(config.router) || n == 0) return;
  phase_start(times_, ctx_);

  dprobs_.resize(size_t(n) * e);
  dlogits_.resize(size_t(n) * e);
  dprobs_.zero(stream);
  dlogits_.zero(stream);
  gate_backward(dprobs_.data(), plan_, probs_.data(), dgate_.data(), stream);
  const AuxLossWeights weights{aux_scale * config.load_balance_weight,
                               aux_scale * config.z_loss_weight};
  if (weights.load_balance != 0.f || weights.z_loss != 0.f) {
    ECMOE_CHECK(aux_ready_, "cuda moe backward: the forward computed no aux losses");
    aux_losses_backward(dlogits_.data(), dprobs_.data(), probs_.data(), n, e, config.group_size,
                        weights, aux_, stream);
  }
  softmax_rows_backward(dlogits_.data(), dprobs_.data(), probs_.data(), n, e, stream);

  // dW_router += router_x^T · dlogits; dx += dlogits · W_router^T (times the noise if jittered).
  Gemm dw;
  dw.trans_a = true;
  dw.m = d;
  dw.n = e;
  dw.k = n;
  dw.a = jittered_ ? router_x_.data() : x_;
  dw.b = dlogits_.data();
  dw.c = g.router;
  dw.beta = 1.f;
  gemm(ctx_.blas, dw, Precision::kFp32);
  Gemm dxg;
  dxg.trans_b = true;
  dxg.m = n;
  dxg.n = d;
  dxg.k = e;
  dxg.a = dlogits_.data();
  dxg.b = w.router;
  if (jittered_) {
    dx_router_.resize(size_t(n) * d);
    dxg.c = dx_router_.data();
    gemm(ctx_.blas, dxg, Precision::kFp32);
    add_product(dx, dx_router_.data(), noise_.data(), int64_t(n) * d, stream);
  } else {
    dxg.c = dx;
    dxg.beta = 1.f;
    gemm(ctx_.blas, dxg, Precision::kFp32);
  }
  phase_lap(times_, ctx_, "router backward");
}

void CudaMoeBackend::finish(MoeOutput& out) {
  ECMOE_CHECK(pending_.valid, "cuda moe: finish() without a forward to finish");
  pending_.valid = false;
  readback_.wait();
  const int n = pending_.request.n_tokens, e = pending_.routing.n_experts;
  if (pending_.stats != DeviceStats::kNone) {
    const int64_t* c = readback_.at<int64_t>(pending_.counts_at);
    ExpertsPerTokenHistogram histogram{};
    for (int b = 0; b < 6; ++b) histogram[b] = c[b];
    RoutingStats counts = plan_counts(n, plan_.expert_offsets_host, histogram, int(c[6]));
    switch (pending_.stats) {
      case DeviceStats::kTokenChoice: {
        const TokenChoiceCounts& tc = pending_.token_choice;
        out.stats = token_choice_stats(std::move(counts), pending_.routing.choices_per_token(),
                                       tc.capacity, tc.dropped, tc.max_demand_over_capacity);
        break;
      }
      case DeviceStats::kPerPair:
        out.stats = per_pair_route_stats(pending_.routing, pending_.request, std::move(counts));
        break;
      case DeviceStats::kExpertChoice: {
        const auto groups = routing_groups(n, pending_.routing.group_size);
        const float* kth = readback_.at<float>(pending_.kth_at);
        out.stats = expert_choice_stats(std::move(counts),
                                        std::vector<float>(kth, kth + groups.size() * size_t(e)),
                                        groups.empty() ? 0 : groups[0].size, int(groups.size()),
                                        pending_.request.capacity_factor);
        break;
      }
      case DeviceStats::kNone:
        break;
    }
  }
  if (pending_.aux) {
    const DeviceAux aux =
        aux_losses_values(readback_.at<double>(pending_.totals_at), n, pending_.weights);
    out.aux = aux.losses;
    if (pending_.entropy) out.stats.router_entropy_sum = aux.entropy_sum;
  }
}

const RoutingPlan& CudaMoeBackend::host_plan() {
  if (!host_plan_valid_) {
    host_plan_ = download_plan(plan_, ctx_.stream);
    host_plan_valid_ = true;
  }
  return host_plan_;
}

}  // namespace

std::unique_ptr<MoeBackend> make_moe_backend() { return std::make_unique<CudaMoeBackend>(); }

}  // namespace ecmoe::cuda
