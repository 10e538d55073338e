#include "moe/gate_backward.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace ecmoe {

void gate_backward(float* dprobs, const RoutingPlan& plan, const float* probs, const float* dgate) {
  const int e = plan.n_experts;
  if (plan.gate_kind == GateKind::kConstant) return;
  if (plan.gate_kind == GateKind::kScore) {
    // A token may sit in several slots, but never twice with the same expert.
    for (int i = 0; i < e; ++i)
      for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s)
        dprobs[int64_t(plan.slot_token[s]) * e + i] += dgate[s];
    return;
  }
  // gate_j = p_j / Z over the token's chosen experts C:
  // dp_m = dgate_m / Z - (sum_j dgate_j p_j) / Z^2 for m in C (dgate_m = 0 if m was dropped).
  const int k = plan.choices_per_token;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < plan.n_tokens; ++t) {
    const int* chosen = plan.token_choices.data() + int64_t(t) * k;
    const float* p = probs + int64_t(t) * e;
    float z = 0.f;
    for (int c = 0; c < k; ++c) z += p[chosen[c]];
    float weighted = 0.f;
    std::vector<float> dg(k, 0.f);
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const int s = plan.token_slots[j];
      const int expert =
          int(std::upper_bound(plan.expert_offsets.begin(), plan.expert_offsets.end(), s) -
              plan.expert_offsets.begin()) -
          1;
      for (int c = 0; c < k; ++c)
        if (chosen[c] == expert) dg[c] = dgate[s];
    }
    for (int c = 0; c < k; ++c) weighted += dg[c] * p[chosen[c]];
    for (int c = 0; c < k; ++c)
      dprobs[int64_t(t) * e + chosen[c]] += dg[c] / z - weighted / (z * z);
  }
}

}  // namespace ecmoe
