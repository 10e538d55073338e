#include <algorithm>
#include <cstddef>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <span>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/launch.cuh"
#include "cuda/route_token_choice.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"

namespace ecmoe::cuda {

namespace {

constexpr int kMaxChoices = 8;
constexpr int kThreads = 512;

// choices[t] = t's k best experts, best first (score descending, ties to the lower index).
__global__ void choose_kernel(int* choices, const float* probs, int n, int e, int k) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* p = probs + t * e;
  int best[kMaxChoices];
  for (int c = 0; c < k; ++c) best[c] = -1;
  for (int i = 0; i < e; ++i) {  // insertion into the sorted k best; equal scores keep i later
    int at = k;
    while (at > 0 && (best[at - 1] < 0 || p[i] > p[best[at - 1]])) --at;
    if (at == k) continue;
    for (int c = k - 1; c > at; --c) best[c] = best[c - 1];
    best[at] = i;
  }
  for (int c = 0; c < k; ++c) choices[t * k + c] = best[c];
}

// Block (g, i): requests for expert i in group g over the k rounds.
__global__ void demand_kernel(int* demand, const int* choices, int n, int group_size, int k) {
  using Reduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int g = blockIdx.x, i = blockIdx.y, e = gridDim.y;
  const int begin = g * group_size, size = min(group_size, n - begin);
  int count = 0;
  for (int j = threadIdx.x; j < size * k; j += blockDim.x)
    count += choices[int64_t(begin) * k + j] == i;
  const int total = Reduce(temp).Sum(count);
  if (threadIdx.x == 0) demand[g * e + i] = total;
}

// top1[t] = t's best score; positions[t] = t (the values the batch-prioritised sort permutes).
__global__ void top1_kernel(float* top1, int* positions, const int* choices, const float* probs,
                            int n, int e, int k) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  top1[t] = probs[t * e + choices[t * k]];
  positions[t] = int(t);
}

// Block (g, i): the requests for expert i in priority order (round 0's tokens in the group's
// order, then round 1's, ...), the first `capacity` kept, written from slot group_offsets[g, i]
// on. order: the group's tokens in priority order (batch-prioritised), or nullptr: position order.
__global__ void assign_kernel(int* slot_token, float* slot_gate, const int* choices,
                              const float* probs, const int* group_offsets, const int* order, int n,
                              int e, int group_size, int k, int capacity_full, int capacity_last,
                              bool renormalize) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  const int g = blockIdx.x, i = blockIdx.y;
  const int begin = g * group_size, size = min(group_size, n - begin);
  const int capacity = g == int(gridDim.x) - 1 ? capacity_last : capacity_full;
  const int first = group_offsets[g * e + i];
  int taken = 0;
  for (int round = 0; round < k && taken < capacity; ++round) {
    for (int j0 = 0; j0 < size && taken < capacity; j0 += blockDim.x) {
      const int j = begin + j0 + int(threadIdx.x);
      const bool inside = j0 + int(threadIdx.x) < size;
      const int t = inside && order ? order[j] : j;
      const int wants = inside && choices[int64_t(t) * k + round] == i;
      int before, total;
      Scan(temp).ExclusiveSum(wants, before, total);
      __syncthreads();
      if (wants && taken + before < capacity) {
        const float* p = probs + int64_t(t) * e;
        float gate = p[i];
        if (renormalize) {
          float z = 0.f;
          for (int c = 0; c < k; ++c) z += p[choices[int64_t(t) * k + c]];
          gate /= z;
        }
        slot_token[first + taken + before] = t;
        slot_gate[first + taken + before] = gate;
      }
      taken += total;  // the same on every thread: the loop conditions stay uniform
    }
  }
}

}  // namespace

TokenChoiceCounts route_token_choice(DevicePlan& plan, TokenChoiceScratch& scratch,
                                     const float* probs, int n, const MoeConfig& config,
                                     float capacity_factor, cudaStream_t stream) {
  const int e = config.n_experts, k = config.choices_per_token();
  ECMOE_CHECK(k >= 1 && k <= kMaxChoices && k <= e, "cuda token choice: k = ", k, " (1 to min(",
              kMaxChoices, ", experts))");
  const bool renormalize = config.renormalize_gates && k > 1;
  const std::vector<GroupRange> groups = routing_groups(n, config.group_size);
  const int G = int(groups.size());
  TokenChoiceCounts counts;
  const int cap_full = G ? token_choice_capacity(groups[0].size, e, k, capacity_factor) : 0;
  const int cap_last = G ? token_choice_capacity(groups.back().size, e, k, capacity_factor) : 0;
  counts.capacity = cap_full;

  plan.n_tokens = n;
  plan.n_experts = e;
  plan.gate_kind = renormalize ? GateKind::kRenormalized : GateKind::kScore;
  plan.identity = false;
  scratch.choices.resize(size_t(n) * k);
  std::vector<int> demand(size_t(G) * e, 0);
  if (n > 0) {
    launch(choose_kernel, blocks_for(n, 128), 128, 0, stream, scratch.choices.data(), probs, n, e,
           k);
    scratch.demand.resize(size_t(G) * e);
    launch(demand_kernel, dim3(G, e), kThreads, 0, stream, scratch.demand.data(),
           scratch.choices.data(), n, groups[0].size, k);
    demand = scratch.demand.download(stream);
  }
  // Slots expert by expert, each expert's group by group: the CPU plan's order.
  std::vector<int> group_offsets(size_t(G) * e);
  plan.expert_offsets_host.assign(size_t(e) + 1, 0);
  int slot = 0;
  for (int i = 0; i < e; ++i) {
    plan.expert_offsets_host[i] = slot;
    for (int g = 0; g < G; ++g) {
      const int cap = g == G - 1 ? cap_last : cap_full;
      const int want = demand[size_t(g) * e + i];
      group_offsets[size_t(g) * e + i] = slot;
      slot += std::min(want, cap);
      counts.dropped += std::max(0, want - cap);
      counts.max_demand_over_capacity =
          std::max(counts.max_demand_over_capacity, double(want) / cap);
    }
  }
  plan.expert_offsets_host[e] = slot;
  plan.expert_offsets.upload(std::span<const int>(plan.expert_offsets_host), stream);
  plan.slot_token.resize(slot);
  plan.slot_gate.resize(slot);
  const int* order = nullptr;
  if (slot > 0 && config.batch_prioritized) {  // each group by descending top-1 score, stably
    scratch.top1.resize(size_t(n));
    scratch.top1_sorted.resize(size_t(n));
    scratch.positions.resize(size_t(n));
    scratch.order.resize(size_t(n));
    launch(top1_kernel, blocks_for(n, 128), 128, 0, stream, scratch.top1.data(),
           scratch.positions.data(), scratch.choices.data(), probs, n, e, k);
    std::vector<int> segments(size_t(G) + 1);
    for (int g = 0; g < G; ++g) segments[g] = groups[g].begin;
    segments[G] = n;
    scratch.segments.upload(std::span<const int>(segments), stream);
    size_t temp_bytes = 0;
    ECMOE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp_bytes, scratch.top1.data(), scratch.top1_sorted.data(),
        scratch.positions.data(), scratch.order.data(), n, G, scratch.segments.data(),
        scratch.segments.data() + 1, 0, 32, stream));
    scratch.sort_temp.resize(temp_bytes);
    ECMOE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        scratch.sort_temp.data(), temp_bytes, scratch.top1.data(), scratch.top1_sorted.data(),
        scratch.positions.data(), scratch.order.data(), n, G, scratch.segments.data(),
        scratch.segments.data() + 1, 0, 32, stream));
    order = scratch.order.data();
  }
  if (slot > 0) {
    scratch.group_offsets.upload(std::span<const int>(group_offsets), stream);
    launch(assign_kernel, dim3(G, e), kThreads, 0, stream, plan.slot_token.data(),
           plan.slot_gate.data(), scratch.choices.data(), probs, scratch.group_offsets.data(),
           order, n, e, groups[0].size, k, cap_full, cap_last, renormalize);
  }
  plan.choices_per_token = renormalize ? k : 0;
  if (renormalize) {
    plan.token_choices.resize(size_t(n) * k);
    if (n > 0)
      ECMOE_CUDA_CHECK(cudaMemcpyAsync(plan.token_choices.data(), scratch.choices.data(),
                                       sizeof(int) * size_t(n) * k, cudaMemcpyDeviceToDevice,
                                       stream));
  } else {
    plan.token_choices.resize(0);
  }
  build_inverse_index(plan, stream);  // nothing waits: the uploads above were staged
  return counts;
}

}  // namespace ecmoe::cuda
