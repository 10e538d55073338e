// The routing plan: one expert-centric layout that every router produces and that dispatch,
// the expert GEMMs, combine and all their adjoints consume. Expert i owns the slots
// [expert_offsets[i], expert_offsets[i+1]); slot s holds token slot_token[s] with gate
// slot_gate[s]. The inverse index (token -> its slots, ordered by expert) lets combine and the
// input gradient sum over a token's experts in a fixed order, with no atomics.
#pragma once
#include <span>
#include <vector>

namespace ecmoe {

// How a slot's gate depends on the router scores S [n, e] (for the backward pass).
enum class GateKind {
  kScore,         // gate = S[t, i]                           (expert choice, capped EC, top-1)
  kRenormalized,  // gate = S[t, i] / sum of S over t's choices (top-k token choice, renormalised)
  kConstant,      // gate = 1, no gradient                      (dense, hash)
};

struct Assignment {
  int expert;
  int token;
  float gate;
};

struct RoutingPlan {
  int n_tokens = 0;
  int n_experts = 0;
  GateKind gate_kind = GateKind::kConstant;
  std::vector<int> expert_offsets;  // [e + 1]
  std::vector<int> slot_token;      // [slots]
  std::vector<float> slot_gate;     // [slots]
  std::vector<int> token_offsets;   // [n + 1]
  std::vector<int> token_slots;     // [slots], each token's slots in expert order
  // kRenormalized only: every expert each token chose, including choices dropped for capacity,
  // since a dropped choice still enters the normalising sum.
  int choices_per_token = 0;
  std::vector<int> token_choices;  // [n, choices_per_token]

  int slot_count() const { return int(slot_token.size()); }
  int expert_load(int expert) const { return expert_offsets[expert + 1] - expert_offsets[expert]; }
};

// Builds the layout by a stable counting sort on the expert: within an expert, slots keep the
// order in which `assignments` lists them.
RoutingPlan make_routing_plan(int n_tokens, int n_experts, GateKind gate_kind,
                              std::span<const Assignment> assignments);

// Checks the plan's internal consistency (offsets, token indices, inverse index); for tests.
bool plan_is_consistent(const RoutingPlan& plan);

// The runs [begin, end) of consecutive experts that have slots, in expert order, from expert
// offsets [e + 1]: the experts whose weights a step reads. A layer converts its weights to bf16
// run by run: all of them at once in training (every expert busy), only the few a generated
// token chose when decoding.
struct ExpertRange {
  int begin = 0, end = 0;
};
std::vector<ExpertRange> experts_with_slots(std::span<const int> expert_offsets);

}  // namespace ecmoe
