#include "moe/routing_plan.h"

#include "core/error.h"

namespace ecmoe {

RoutingPlan make_routing_plan(int n_tokens, int n_experts, GateKind gate_kind,
                              std::span<const Assignment> assignments) {
  RoutingPlan plan;
  plan.n_tokens = n_tokens;
  plan.n_experts = n_experts;
  plan.gate_kind = gate_kind;
  const int slots = int(assignments.size());

  plan.expert_offsets.assign(n_experts + 1, 0);
  plan.token_offsets.assign(n_tokens + 1, 0);
  for (const auto& a : assignments) {
    ECMOE_CHECK(a.expert >= 0 && a.expert < n_experts && a.token >= 0 && a.token < n_tokens,
                "routing plan: assignment (expert ", a.expert, ", token ", a.token,
                ") out of range");
    ++plan.expert_offsets[a.expert + 1];
    ++plan.token_offsets[a.token + 1];
  }
  for (int i = 0; i < n_experts; ++i) plan.expert_offsets[i + 1] += plan.expert_offsets[i];
  for (int t = 0; t < n_tokens; ++t) plan.token_offsets[t + 1] += plan.token_offsets[t];

  plan.slot_token.resize(slots);
  plan.slot_gate.resize(slots);
  std::vector<int> cursor(plan.expert_offsets.begin(), plan.expert_offsets.end() - 1);
  for (const auto& a : assignments) {
    const int s = cursor[a.expert]++;
    plan.slot_token[s] = a.token;
    plan.slot_gate[s] = a.gate;
  }
  // Slots are visited in expert order, so each token's slot list comes out ordered by expert.
  plan.token_slots.resize(slots);
  std::vector<int> token_cursor(plan.token_offsets.begin(), plan.token_offsets.end() - 1);
  for (int s = 0; s < slots; ++s) plan.token_slots[token_cursor[plan.slot_token[s]]++] = s;
  return plan;
}

bool plan_is_consistent(const RoutingPlan& plan) {
  const int slots = plan.slot_count();
  if (int(plan.expert_offsets.size()) != plan.n_experts + 1) return false;
  if (int(plan.token_offsets.size()) != plan.n_tokens + 1) return false;
  if (plan.expert_offsets.front() != 0 || plan.expert_offsets.back() != slots) return false;
  if (plan.token_offsets.front() != 0 || plan.token_offsets.back() != slots) return false;
  if (int(plan.slot_gate.size()) != slots || int(plan.token_slots.size()) != slots) return false;
  for (int i = 0; i < plan.n_experts; ++i)
    if (plan.expert_offsets[i] > plan.expert_offsets[i + 1]) return false;
  std::vector<int> seen(slots, 0);
  for (int t = 0; t < plan.n_tokens; ++t)
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const int s = plan.token_slots[j];
      if (s < 0 || s >= slots || plan.slot_token[s] != t || seen[s]++) return false;
    }
  return true;
}

std::vector<ExpertRange> experts_with_slots(std::span<const int> expert_offsets) {
  std::vector<ExpertRange> runs;
  const int e = expert_offsets.empty() ? 0 : int(expert_offsets.size()) - 1;
  for (int i = 0; i < e; ++i) {
    if (expert_offsets[i + 1] == expert_offsets[i]) continue;
    if (!runs.empty() && runs.back().end == i)
      runs.back().end = i + 1;
    else
      runs.push_back({i, i + 1});
  }
  return runs;
}

}  // namespace ecmoe
