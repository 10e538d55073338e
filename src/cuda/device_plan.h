// The routing plan on the GPU: the same fields and meaning as moe/routing_plan.h (expert i owns
// slots [expert_offsets[i], expert_offsets[i+1]); slot s holds token slot_token[s] with gate
// slot_gate[s]; token t's slots, in expert order, are token_slots[token_offsets[t] ..
// token_offsets[t+1])). The expert offsets are also kept on the host, where the expert GEMMs are
// sized. Routers on the GPU build it in place (cuda/route_expert_choice.h); any other plan is
// uploaded from the CPU's.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/device_buffer.h"
#include "moe/routing_plan.h"

namespace ecmoe::cuda {

struct DevicePlan {
  int n_tokens = 0;
  int n_experts = 0;
  GateKind gate_kind = GateKind::kConstant;
  // Slot t holds token t with gate 1, one expert (a dense layer's plan): the experts may then
  // skip the dispatch's and combine's copies (cuda/experts.h). Set by whoever builds the plan.
  bool identity = false;
  std::vector<int> expert_offsets_host;  // [e + 1]
  DeviceVec<int> expert_offsets;         // [e + 1]
  DeviceVec<int> slot_token;             // [slots]
  DeviceVec<float> slot_gate;            // [slots]
  DeviceVec<int> token_offsets;          // [n + 1]
  DeviceVec<int> token_slots;            // [slots]
  // kRenormalized only (top-k): every expert each token chose, dropped choices included.
  int choices_per_token = 0;
  DeviceVec<int> token_choices;  // [n, choices_per_token]
  // build_inverse_index's scratch, kept so that routing allocates nothing after its first call.
  DeviceVec<int> sort_ids, sort_tokens;
  DeviceVec<unsigned char> sort_temp;

  int slot_count() const { return expert_offsets_host.empty() ? 0 : expert_offsets_host.back(); }
  int expert_load(int i) const { return expert_offsets_host[i + 1] - expert_offsets_host[i]; }
  // k when every expert has exactly k slots (expert choice), else -1.
  int uniform_load() const;
};

void upload_plan(DevicePlan& out, const RoutingPlan& plan, cudaStream_t stream);
// The whole plan on the host (tests, MoeBackend::host_plan); waits for the stream.
RoutingPlan download_plan(const DevicePlan& plan, cudaStream_t stream);

// What count_plan reads from the tokens, counted on the device: counts[0..5] the histogram of
// the tokens' expert counts (ExpertsPerTokenHistogram's bins), counts[6] their maximum. With the
// host's expert offsets, plan_counts() makes RoutingStats' plan fields from them, so statistics
// need these 56 bytes instead of the plan. Asynchronous.
inline constexpr int kPlanCounts = 7;
void count_plan_on_device(const DevicePlan& plan, DeviceVec<int64_t>& counts, cudaStream_t stream);

// Builds token_offsets and token_slots from slot_token (a stable sort of the slots by token, so
// each token's slots stay in slot order, which is expert order), as make_routing_plan does.
void build_inverse_index(DevicePlan& plan, cudaStream_t stream);

}  // namespace ecmoe::cuda
