// Token choice routing on the GPU (moe/route_token_choice.cpp's rule, position order): each token
// ranks the experts by score (ties: lower expert index) and asks for its first k; per routing
// group all first choices are served before any second choice, tokens in position order, and an
// expert full at capacity drops the request. Gates: the score, or the score over the sum of the
// token's k chosen scores (renormalize_gates, k > 1). For the same scores the plan is the CPU's,
// slot for slot. Batch-prioritised routing (top-1 score order) is not here: the layer routes it
// on the host.
//
// How: a thread per token picks its k experts; a block per (group, expert) counts the requests;
// the host turns the counts into slot offsets; a block per (group, expert) then walks the
// requests in priority order (round by round, tokens in order) and keeps the first `capacity` by
// block scans.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "moe/moe_config.h"

namespace ecmoe::cuda {

struct TokenChoiceScratch {
  DeviceVec<int> choices;        // [n, k]
  DeviceVec<int> demand;         // [groups, e] requests per group and expert
  DeviceVec<int> group_offsets;  // [groups, e] first slot of each (group, expert)
};

struct TokenChoiceCounts {
  int capacity = 0;     // of the first group
  int64_t dropped = 0;  // requests over capacity
  double max_demand_over_capacity = 0;
};

// probs [n, e] (device) -> plan (rebuilt in place, inverse index and, when renormalised, the
// token choices included). Waits for the stream (the offsets are sized on the host).
TokenChoiceCounts route_token_choice(DevicePlan& plan, TokenChoiceScratch& scratch,
                                     const float* probs, int n, const MoeConfig& config,
                                     float capacity_factor, cudaStream_t stream);

}  // namespace ecmoe::cuda
