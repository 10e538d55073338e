#include <cstddef>
#include <cub/device/device_radix_sort.cuh>
#include <span>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_plan.h"
#include "cuda/launch.cuh"

namespace ecmoe::cuda {

namespace {

__global__ void iota_kernel(int* out, int n) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < n) out[j] = int(j);
}

// token_offsets[t] = the number of sorted slot tokens below t (a lower bound), t in [0, n].
__global__ void token_offsets_kernel(int* token_offsets, const int* sorted_tokens, int S, int n) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t > n) return;
  int lo = 0, hi = S;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sorted_tokens[mid] < t)
      lo = mid + 1;
    else
      hi = mid;
  }
  token_offsets[t] = lo;
}

constexpr int kCountThreads = 256;

// One block: each thread counts its tokens' expert counts in registers, then the block adds them
// in shared memory (integer atomics: the same sums in any order).
__global__ void plan_counts_kernel(int64_t* counts, const int* token_offsets, int n) {
  __shared__ int histogram[6];
  __shared__ int max_count;
  if (threadIdx.x < 6) histogram[threadIdx.x] = 0;
  if (threadIdx.x == 0) max_count = 0;
  __syncthreads();
  int mine[6] = {0, 0, 0, 0, 0, 0};
  int my_max = 0;
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    const int count = token_offsets[t + 1] - token_offsets[t];
    ++mine[count < 5 ? count : 5];
    my_max = count > my_max ? count : my_max;
  }
  for (int b = 0; b < 6; ++b)
    if (mine[b] != 0) atomicAdd(&histogram[b], mine[b]);
  atomicMax(&max_count, my_max);
  __syncthreads();
  if (threadIdx.x < 6) counts[threadIdx.x] = histogram[threadIdx.x];
  if (threadIdx.x == 0) counts[6] = max_count;
}

int bits_for(int n) {
  int bits = 1;
  while (bits < 31 && (1 << bits) <= n) ++bits;
  return bits;
}

}  // namespace

int DevicePlan::uniform_load() const {
  if (n_experts == 0) return -1;
  const int k = expert_load(0);
  for (int i = 1; i < n_experts; ++i)
    if (expert_load(i) != k) return -1;
  return k;
}

namespace {

bool is_identity(const RoutingPlan& plan) {
  if (plan.gate_kind != GateKind::kConstant || plan.n_experts != 1 ||
      plan.slot_count() != plan.n_tokens)
    return false;
  for (int s = 0; s < plan.n_tokens; ++s)
    if (plan.slot_token[s] != s || plan.slot_gate[s] != 1.f) return false;
  return true;
}

}  // namespace

void upload_plan(DevicePlan& out, const RoutingPlan& plan, cudaStream_t stream) {
  out.n_tokens = plan.n_tokens;
  out.n_experts = plan.n_experts;
  out.gate_kind = plan.gate_kind;
  out.identity = is_identity(plan);
  out.expert_offsets_host = plan.expert_offsets;
  out.expert_offsets.upload(std::span<const int>(plan.expert_offsets), stream);
  out.slot_token.upload(std::span<const int>(plan.slot_token), stream);
  out.slot_gate.upload(std::span<const float>(plan.slot_gate), stream);
  out.token_offsets.upload(std::span<const int>(plan.token_offsets), stream);
  out.token_slots.upload(std::span<const int>(plan.token_slots), stream);
  out.choices_per_token = plan.choices_per_token;
  out.token_choices.upload(std::span<const int>(plan.token_choices), stream);
  // Nothing waits: uploads are staged (the caller's vectors may go at once).
}

RoutingPlan download_plan(const DevicePlan& plan, cudaStream_t stream) {
  RoutingPlan out;
  out.n_tokens = plan.n_tokens;
  out.n_experts = plan.n_experts;
  out.gate_kind = plan.gate_kind;
  out.expert_offsets = plan.expert_offsets_host;
  out.slot_token = plan.slot_token.download(stream);
  out.slot_gate = plan.slot_gate.download(stream);
  out.token_offsets = plan.token_offsets.download(stream);
  out.token_slots = plan.token_slots.download(stream);
  out.choices_per_token = plan.choices_per_token;
  out.token_choices = plan.token_choices.download(stream);
  return out;
}

void count_plan_on_device(const DevicePlan& plan, DeviceVec<int64_t>& counts, cudaStream_t stream) {
  counts.resize(kPlanCounts);
  ECMOE_CHECK(plan.n_tokens == 0 || plan.token_offsets.size() == size_t(plan.n_tokens) + 1,
              "cuda plan counts: the plan has no inverse index");
  if (plan.n_tokens == 0) {
    counts.zero(stream);
    return;
  }
  launch(plan_counts_kernel, 1, kCountThreads, 0, stream, counts.data(), plan.token_offsets.data(),
         plan.n_tokens);
}

void build_inverse_index(DevicePlan& plan, cudaStream_t stream) {
  const int S = plan.slot_count(), n = plan.n_tokens;
  plan.token_offsets.resize(size_t(n) + 1);
  plan.token_slots.resize(S);
  plan.sort_ids.resize(S);
  plan.sort_tokens.resize(S);
  if (S > 0) {
    launch(iota_kernel, blocks_for(S, 256), 256, 0, stream, plan.sort_ids.data(), S);
    // Radix sort is stable: a token's slots keep their (expert) order.
    size_t temp_bytes = 0;
    ECMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, temp_bytes, plan.slot_token.data(), plan.sort_tokens.data(), plan.sort_ids.data(),
        plan.token_slots.data(), S, 0, bits_for(n), stream));
    plan.sort_temp.resize(temp_bytes);
    ECMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        plan.sort_temp.data(), temp_bytes, plan.slot_token.data(), plan.sort_tokens.data(),
        plan.sort_ids.data(), plan.token_slots.data(), S, 0, bits_for(n), stream));
  }
  launch(token_offsets_kernel, blocks_for(int64_t(n) + 1, 256), 256, 0, stream,
         plan.token_offsets.data(), plan.sort_tokens.data(), S, n);
}

}  // namespace ecmoe::cuda
