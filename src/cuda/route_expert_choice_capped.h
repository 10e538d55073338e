// Capped expert choice on the GPU (moe/capped_solver.h's method): per routing group, the
// entropy-regularised capped program solved by the same alternating exact KL projections, with
// the same epsilon scaling, stopping rule and rounding.
//
// On the device: the solver's sweeps (a block per (group, expert) finds the row's log-scale by
// the CPU's bracketed root find, with block reductions in a fixed tree; a warp per token over
// the cap does the column's), the plan A, and the sort of every (expert, token) pair into the
// greedy's order (A, then score, then index: a stable radix sort of one 64-bit key). On the host:
// the greedy pass over the sorted pairs, fetched in chunks until every expert is full (usually a
// small prefix), and the augmenting paths, by the CPU's own code (capped_assignment), so for the
// same A the selection is the CPU's. A itself is not the CPU's to the bit (the device's expf and
// its summation order differ from the host's), so neither is the plan where two pairs are
// nearly tied; the tests hold the solution to the CPU's within the solver's tolerance and the
// rounding to the CPU's exactly (docs/cuda.md).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "moe/moe_config.h"
#include "moe/routing_stats.h"

namespace ecmoe::cuda {

struct CappedScratch {
  DeviceVec<float> scores_t;                // [e, n]
  DeviceVec<double> u, row_error;           // [groups, e]: the experts' potentials, rows' errors
  DeviceVec<double> c;                      // [n]: the tokens' potentials
  DeviceVec<float> rows;                    // [e, n]: a row step's scaled scores
  DeviceVec<float> cols;                    // [n, e]: a column step's, for tokens over the cap
  DeviceVec<double> residual, lambda_used;  // [groups]
  DeviceVec<int> iterations, done;          // [groups]
  DeviceVec<float> log_plan;                // [e, n]: log A, each group's tokens in its range
  DeviceVec<uint64_t> keys, keys_sorted;    // [e · n]: each group's pairs, group after group
  DeviceVec<int> pairs, pairs_sorted;       // [e · n]: group-local pair j = i · size + t
  DeviceVec<int> segments;                  // [groups + 1]: each group's first pair
  DeviceVec<unsigned char> sort_temp;
  DeviceVec<int> top_tokens;  // [e, per_expert]: the plain top-k of A (statistics)
  DeviceVec<float> top_values, top_kth;
};

// The solver: probs [n, e] (device) -> scratch.log_plan [e, n] and each group's residual,
// iterations (scratch). Asynchronous.
void solve_capped_on_device(CappedScratch& scratch, const float* probs, int n,
                            const MoeConfig& config, float capacity_factor, cudaStream_t stream);

// The rounding of scratch.log_plan -> the plan, rebuilt in place on the device (gates = the
// scores, gathered there), and the router's statistics (the rounding's changes only when
// `count_changes`), as the CPU's router gives them. probs [n, e] (device). Waits for the stream:
// the greedy pass runs on the host.
RoutingStats round_capped_on_device(DevicePlan& plan, CappedScratch& scratch, const float* probs,
                                    int n, const MoeConfig& config, float capacity_factor,
                                    bool count_changes, cudaStream_t stream);

// Both.
RoutingStats route_expert_choice_capped(DevicePlan& plan, CappedScratch& scratch,
                                        const float* probs, int n, const MoeConfig& config,
                                        float capacity_factor, bool count_changes,
                                        cudaStream_t stream);

}  // namespace ecmoe::cuda
