// The routers that decide each (token, expert) pair on its own, on the GPU: dense (one expert,
// every token, gate 1), hash (expert = token id mod e, gate 1) and expert_threshold (every expert
// whose score reaches its cutoff, gate = score). Their CPU rules are moe/route_dense.cpp,
// route_hash.cpp and route_expert_threshold.cpp; for the same inputs the plan is the CPU's, slot
// for slot: an expert's slots are its tokens in token order.
//
// How: each expert's token count (dense and hash: on the host; thresholds: a block per expert on
// the device), the host turns the counts into offsets, and a block per expert writes its tokens
// in order by block scans.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "moe/moe_config.h"

namespace ecmoe::cuda {

struct MaskRouteScratch {
  DeviceVec<int32_t> token_ids;  // [n] hash
  DeviceVec<float> cutoffs;      // [e] expert_threshold
  DeviceVec<int> counts;         // [e]
};

// config.router is kDense, kHash or kExpertThreshold. probs [n, e] (device; threshold only),
// token_ids [n] and cutoffs [e] on the host (hash / threshold only; checked as the CPU checks
// them). Rebuilds plan in place (inverse index included); waits for the stream for thresholds
// only (their counts).
void route_mask(DevicePlan& plan, MaskRouteScratch& scratch, const float* probs,
                const int32_t* token_ids, const float* cutoffs, int n, const MoeConfig& config,
                cudaStream_t stream);

}  // namespace ecmoe::cuda
