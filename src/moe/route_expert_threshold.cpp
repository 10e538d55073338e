// Threshold routing: token t goes to every expert i with S[t, i] >= cutoff[i], gate = S[t, i]
// (the expert-choice plan layout and gates, so the same backward). A decision per token, hence
// causal; the load per expert is no longer exactly k and a token may get 0..e experts. The
// expert-choice k-th scores are reported too, so cutoffs keep tracking the router while a model
// trains with thresholds.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe {

void add_kth_scores(const MoeConfig& config, const RouteRequest& request, RoutingStats& stats) {
  const int e = config.n_experts;
  const auto groups = routing_groups(request.n_tokens, config.group_size);
  std::vector<float> kth(groups.size() * e);  // [groups, e]
  const int n_jobs = int(groups.size()) * e;
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < n_jobs; ++job) {
    const GroupRange g = groups[job / e];
    const int i = job % e;
    const int k = expert_choice_capacity(g.size, e, request.capacity_factor);
    std::vector<float> s(g.size);
    for (int t = 0; t < g.size; ++t) s[t] = request.probs[int64_t(g.begin + t) * e + i];
    // The k-th largest value is the same whatever the tie order.
    std::nth_element(s.begin(), s.begin() + (k - 1), s.end(), std::greater<float>());
    kth[job] = s[k - 1];
  }
  stats.kth_score_sum.resize(e, 0.0);
  for (size_t gi = 0; gi < groups.size(); ++gi)
    for (int i = 0; i < e; ++i) stats.kth_score_sum[i] += kth[gi * e + i];
  stats.kth_score_groups += int64_t(groups.size());
}

RouteResult route_expert_threshold(const MoeConfig& config, const RouteRequest& request) {
  const int n = request.n_tokens, e = config.n_experts;
  ECMOE_CHECK(request.cutoffs != nullptr || n == 0, "expert_threshold routing needs cutoffs");
  for (int i = 0; i < e && n > 0; ++i)
    ECMOE_CHECK(std::isfinite(request.cutoffs[i]) && request.cutoffs[i] >= 0.f,
                "expert_threshold routing: expert ", i, " has no calibrated cutoff (",
                request.cutoffs[i], "); train with expert choice first, or run `ecmoe calibrate`");
  std::vector<Assignment> assignments;
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < e; ++i) {
      const float s = request.probs[int64_t(t) * e + i];
      if (s >= request.cutoffs[i]) assignments.push_back({i, t, s});
    }
  RouteResult r;
  r.plan = make_routing_plan(n, e, GateKind::kScore, assignments);
  r.stats = per_pair_route_stats(config, request, plan_counts(r.plan));
  return r;
}

}  // namespace ecmoe
