// moe/aux_losses.h and moe/router_entropy.h on the GPU, on a layer's logits and scores [n, e] in
// device memory: the auxiliary losses' values, the router's entropy sum, and in the backward the
// losses' gradients, so that no [n, e] array goes to the host during training (only the three
// sums come back). Per token (a thread each, the CPU's loops over its row): the top-1 expert (ties
// to the lower index), the row's logsumexp in float as the CPU, its entropy in double. Per group
// and expert: top-1 counts and score sums over chunks of tokens, then the chunks in order; the
// totals over groups and token chunks in one block's fixed tree. Fixed orders, no atomics: the
// same bits run to run; within double rounding of the CPU's sequential sums.
#pragma once
#include <cuda_runtime.h>

#include "cuda/device_buffer.h"
#include "moe/aux_losses.h"

namespace ecmoe::cuda {

struct AuxScratch {
  DeviceVec<int> top1;           // [n]
  DeviceVec<float> lse;          // [n]: logsumexp of each token's logits
  DeviceVec<double> token;       // [2, n]: each token's entropy, then its lse²
  DeviceVec<double> chunks;      // per chunk of tokens: the partial sums
  DeviceVec<double> fractions;   // [groups, e]: f_i of each group (kept for the backward)
  DeviceVec<double> group_sums;  // [groups, e]: each group's score sums over its tokens
  DeviceVec<double> totals;      // [3]: load balance (mean over groups), Σ lse², Σ entropy
};

struct DeviceAux {
  AuxLosses losses;
  double entropy_sum = 0;  // RoutingStats::router_entropy_sum
};

// logits, probs [n, e] (device) -> scratch.totals [3] (device), queued on the stream.
void aux_losses_forward(const float* logits, const float* probs, int n, int e, int group_size,
                        AuxScratch& scratch, cudaStream_t stream);
// The losses and the entropy sum from forward's totals, copied to the host.
DeviceAux aux_losses_values(const double* totals, int n, AuxLossWeights weights);
// Accumulates the gradients of weights · losses into dlogits and dprobs [n, e] (device), from the
// last forward's scratch (its top-1 fractions and logsumexps) and probs.
void aux_losses_backward(float* dlogits, float* dprobs, const float* probs, int n, int e,
                         int group_size, AuxLossWeights weights, const AuxScratch& scratch,
                         cudaStream_t stream);

}  // namespace ecmoe::cuda
