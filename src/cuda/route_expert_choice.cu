#include <cstddef>
#include <cstdint>
#include <cub/block/block_scan.cuh>
#include <span>

#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/launch.cuh"
#include "cuda/route_expert_choice.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe::cuda {

namespace {

constexpr int kSelectThreads = 512;

// order_key (device_math.cuh): for the non-negative scores of a softmax, -0 never occurs, so equal
// keys are exactly equal scores.

__global__ void transpose_kernel(float* out, const float* in, int n, int e) {  // [n, e] -> [e, n]
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= int64_t(n) * e) return;
  const int64_t t = j / e, i = j % e;
  out[i * n + t] = in[j];
}

// Block (g, i): expert i over group g's tokens [g·group_size, ...). Writes the k chosen tokens to
// slots [i·slots_per_expert + g·k_full, ... + k) in token order, and the k-th score.
__global__ void __launch_bounds__(kSelectThreads)
    select_kernel(const float* scores_t, int n, int group_size, int k_full, int k_last,
                  int slots_per_expert, int* slot_token, float* slot_gate, float* kth) {
  using Scan = cub::BlockScan<int, kSelectThreads>;
  __shared__ typename Scan::TempStorage scan_temp;
  __shared__ int hist[256];
  __shared__ unsigned shared_prefix;
  __shared__ int shared_remaining;

  const int g = blockIdx.x, i = blockIdx.y, e = gridDim.y;
  const int begin = g * group_size, size = min(group_size, n - begin);
  const int k = g == int(gridDim.x) - 1 ? k_last : k_full;
  const float* p = scores_t + int64_t(i) * n + begin;

  // The k-th largest key, 8 bits at a time from the top: `prefix` holds the bits found so far,
  // `remaining` how many keys with that prefix still lie at or above the k-th.
  unsigned prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < size; j += blockDim.x) {
      const unsigned key = order_key(p[j]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0, b = 255;
      for (; b > 0; --b) {
        if (above + hist[b] >= remaining) break;
        above += hist[b];
      }
      shared_prefix = prefix | (unsigned(b) << shift);
      shared_remaining = remaining - above;
    }
    __syncthreads();
    prefix = shared_prefix;
    remaining = shared_remaining;
    mask |= 255u << shift;
  }
  // prefix is now the k-th key; `remaining` tokens with exactly that key are taken, the first in
  // token order (ties to the lower index), with every token whose key is larger.
  const int out0 = i * slots_per_expert + g * k_full;
  int equal_base = 0, chosen_base = 0;
  for (int j0 = 0; j0 < size; j0 += blockDim.x) {
    const int j = j0 + threadIdx.x;
    const bool inside = j < size;
    const float score = inside ? p[j] : 0.f;
    const unsigned key = inside ? order_key(score) : 0u;
    const int equal = inside && key == prefix;
    int equal_before, equal_total;
    Scan(scan_temp).ExclusiveSum(equal, equal_before, equal_total);
    __syncthreads();
    const int chosen = inside && (key > prefix || (equal && equal_base + equal_before < remaining));
    int chosen_before, chosen_total;
    Scan(scan_temp).ExclusiveSum(chosen, chosen_before, chosen_total);
    __syncthreads();
    if (chosen) {
      const int s = out0 + chosen_base + chosen_before;
      slot_token[s] = begin + j;
      slot_gate[s] = score;
    }
    equal_base += equal_total;
    chosen_base += chosen_total;
  }
  if (threadIdx.x == 0) kth[int64_t(g) * e + i] = key_to_float(prefix);
}

}  // namespace

void transpose_scores(float* out, const float* in, int n, int e, cudaStream_t stream) {
  if (int64_t(n) * e == 0) return;
  launch(transpose_kernel, blocks_for(int64_t(n) * e, 256), 256, 0, stream, out, in, n, e);
}

void select_top_k(const float* values_t, int n, int e, int group_size, int n_groups, int k_full,
                  int k_last, int per_expert, int* slot_token, float* slot_value, float* kth,
                  cudaStream_t stream) {
  if (n_groups == 0 || e == 0) return;
  launch(select_kernel, dim3(n_groups, e), kSelectThreads, 0, stream, values_t, n, group_size,
         k_full, k_last, per_expert, slot_token, slot_value, kth);
}

void route_expert_choice(DevicePlan& plan, ExpertChoiceScratch& scratch, const float* probs, int n,
                         const MoeConfig& config, float capacity_factor, cudaStream_t stream) {
  const int e = config.n_experts;
  const std::vector<GroupRange> groups = routing_groups(n, config.group_size);
  const int G = int(groups.size());
  const int k_full = G ? expert_choice_capacity(groups[0].size, e, capacity_factor) : 0;
  const int k_last = G ? expert_choice_capacity(groups.back().size, e, capacity_factor) : 0;
  const int per_expert = G ? (G - 1) * k_full + k_last : 0;

  plan.n_tokens = n;
  plan.n_experts = e;
  plan.gate_kind = GateKind::kScore;
  plan.identity = false;
  plan.choices_per_token = 0;
  plan.token_choices.resize(0);
  plan.expert_offsets_host.resize(size_t(e) + 1);
  for (int i = 0; i <= e; ++i) plan.expert_offsets_host[i] = i * per_expert;
  plan.expert_offsets.upload(std::span<const int>(plan.expert_offsets_host), stream);
  const int S = e * per_expert;
  plan.slot_token.resize(S);
  plan.slot_gate.resize(S);
  scratch.kth.resize(size_t(G) * e);
  if (S > 0) {
    scratch.scores_t.resize(size_t(n) * e);
    transpose_scores(scratch.scores_t.data(), probs, n, e, stream);
    const int group_size = groups[0].size;  // every group but the last has this size
    select_top_k(scratch.scores_t.data(), n, e, group_size, G, k_full, k_last, per_expert,
                 plan.slot_token.data(), plan.slot_gate.data(), scratch.kth.data(), stream);
  }
  build_inverse_index(plan, stream);
}

}  // namespace ecmoe::cuda
