// Token choice routing on the GPU (moe/route_token_choice.cpp's rule, position order): each token
// ranks the experts by score (ties: lower expert index) and asks for its first k; per routing
// group all first choices are served before any second choice, tokens in position order, and an
// expert full at capacity drops the request. Gates: the score, or the score over the sum of the
// token's k chosen scores (renormalize_gates, k > 1). With batch_prioritized, a group's tokens go
// by descending top-1 score instead (a stable order: equal scores keep their positions). For the
// same scores the plan is the CPU's, slot for slot.
//
// How: a thread per token picks its k experts; a block per (group, expert) counts the requests;
// the host turns the counts into slot offsets; a block per (group, expert) then walks the
// requests in priority order (round by round, tokens in order) and keeps the first `capacity` by
// block scans. Batch-prioritised order is a stable segmented radix sort (CUB) by top-1 score.
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
  // batch_prioritized: each group's tokens by descending top-1 score, and the sort's buffers.
  DeviceVec<int> order, positions, segments;
  DeviceVec<float> top1, top1_sorted;
  DeviceVec<unsigned char> sort_temp;
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
