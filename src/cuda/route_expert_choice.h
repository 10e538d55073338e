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

// Its two steps, which capped expert choice (cuda/route_expert_choice_capped.h) uses too:
// [n, e] -> [e, n];
void transpose_scores(float* out, const float* in, int n, int e, cudaStream_t stream);
// per group g of `group_size` tokens (the last may be shorter) and expert i, the k highest values
// of values_t [e, n] (k_full, k_last in the last group; ties to the lower token index), written
// in token order to slots [i·per_expert + g·k_full, ... + k) as global token indices with their
// values, and the k-th value to kth [groups, e].
void select_top_k(const float* values_t, int n, int e, int group_size, int n_groups, int k_full,
                  int k_last, int per_expert, int* slot_token, float* slot_value, float* kth,
                  cudaStream_t stream);

}  // namespace ecmoe::cuda
