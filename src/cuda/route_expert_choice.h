// Expert choice routing on the GPU (moe/route_expert_choice.cpp's rule): per routing group, each
// expert takes the k tokens with the highest scores, ties to the lower token index, gate = score;
// an expert's slots hold group 0's tokens, then group 1's, ..., each group's in token order. For
// the same scores the plan is the CPU's, slot for slot.
//
// How: the scores are transposed to [e, n]; one block per (group, expert) finds the k-th largest
// score exactly by a radix select over the float's order-preserving bits (4 passes of 8 bits,
// counting in shared memory), then writes the chosen tokens in token order by two block scans
// (ties at the k-th score are taken in token order until k are chosen).
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "moe/moe_config.h"

namespace ecmoe::cuda {

struct ExpertChoiceScratch {
  DeviceVec<float> scores_t;  // [e, n]
  DeviceVec<float> kth;       // [groups, e]
};

// probs [n, e] (device) -> plan (rebuilt in place, inverse index included) and scratch.kth: each
// group's k-th score per expert, [groups, e] (RoutingStats::kth_score_sum; download it when the
// statistics are wanted). Asynchronous: nothing waits for the stream.
void route_expert_choice(DevicePlan& plan, ExpertChoiceScratch& scratch, const float* probs, int n,
                         const MoeConfig& config, float capacity_factor, cudaStream_t stream);

}  // namespace ecmoe::cuda
