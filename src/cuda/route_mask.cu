#include <cmath>
#include <cstddef>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <span>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/launch.cuh"
#include "cuda/route_mask.h"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 512;

enum class Rule { kDense, kHash, kThreshold };

// Does expert i take token t, and with which gate.
__device__ __forceinline__ bool takes(Rule rule, int t, int i, int e, const float* probs,
                                      const int32_t* ids, const float* cutoffs, float* gate) {
  switch (rule) {
    case Rule::kDense:
      *gate = 1.f;
      return true;
    case Rule::kHash:
      *gate = 1.f;
      return ids[t] % e == i;
    case Rule::kThreshold:
      *gate = probs[int64_t(t) * e + i];
      return *gate >= cutoffs[i];
  }
  return false;
}

__global__ void count_kernel(int* counts, Rule rule, int n, const float* probs, const int32_t* ids,
                             const float* cutoffs) {
  using Reduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int i = blockIdx.x, e = gridDim.x;
  int count = 0;
  float gate;
  for (int t = threadIdx.x; t < n; t += blockDim.x)
    count += takes(rule, t, i, e, probs, ids, cutoffs, &gate);
  const int total = Reduce(temp).Sum(count);
  if (threadIdx.x == 0) counts[i] = total;
}

__global__ void write_kernel(int* slot_token, float* slot_gate, const int* expert_offsets,
                             Rule rule, int n, const float* probs, const int32_t* ids,
                             const float* cutoffs) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  const int i = blockIdx.x, e = gridDim.x;
  int written = expert_offsets[i];
  for (int t0 = 0; t0 < n; t0 += blockDim.x) {
    const int t = t0 + int(threadIdx.x);
    float gate = 0.f;
    const int member = t < n && takes(rule, t, i, e, probs, ids, cutoffs, &gate);
    int before, total;
    Scan(temp).ExclusiveSum(member, before, total);
    __syncthreads();
    if (member) {
      slot_token[written + before] = t;
      slot_gate[written + before] = gate;
    }
    written += total;
  }
}

}  // namespace

void route_mask(DevicePlan& plan, MaskRouteScratch& scratch, const float* probs,
                const int32_t* token_ids, const float* cutoffs, int n, const MoeConfig& config,
                cudaStream_t stream) {
  Rule rule;
  int e = config.n_experts;
  switch (config.router) {
    case RouterKind::kDense:
      rule = Rule::kDense;
      e = 1;
      break;
    case RouterKind::kHash:
      rule = Rule::kHash;
      ECMOE_CHECK(token_ids != nullptr || n == 0, "hash routing needs token ids");
      for (int t = 0; t < n; ++t)
        ECMOE_CHECK(token_ids[t] >= 0, "hash routing: negative token id ", token_ids[t],
                    " at position ", t);
      scratch.token_ids.upload(std::span<const int32_t>(token_ids, size_t(n)), stream);
      break;
    case RouterKind::kExpertThreshold:
      rule = Rule::kThreshold;
      ECMOE_CHECK(cutoffs != nullptr || n == 0, "expert_threshold routing needs cutoffs");
      for (int i = 0; i < e && n > 0; ++i)
        ECMOE_CHECK(std::isfinite(cutoffs[i]) && cutoffs[i] >= 0.f,
                    "expert_threshold routing: expert ", i, " has no calibrated cutoff (",
                    cutoffs[i], "); train with expert choice first, or run `ecmoe calibrate`");
      if (n > 0) scratch.cutoffs.upload(std::span<const float>(cutoffs, size_t(e)), stream);
      break;
    default:
      fail("cuda route_mask: not a per-pair router: ", router_name(config.router));
  }
  plan.n_tokens = n;
  plan.n_experts = e;
  plan.gate_kind = rule == Rule::kThreshold ? GateKind::kScore : GateKind::kConstant;
  plan.identity = rule == Rule::kDense && e == 1;  // write_kernel fills slots in token order
  plan.choices_per_token = 0;
  plan.token_choices.resize(0);
  // Each expert's token count: known on the host for dense (all n) and hash (the ids are the
  // host's); counted on the device for thresholds, which waits for the stream.
  std::vector<int> counts(size_t(e), 0);
  if (rule == Rule::kDense) {
    counts.assign(size_t(e), n);
  } else if (rule == Rule::kHash) {
    for (int t = 0; t < n; ++t) ++counts[size_t(token_ids[t] % e)];
  } else if (n > 0) {
    scratch.counts.resize(size_t(e));
    launch(count_kernel, e, kThreads, 0, stream, scratch.counts.data(), rule, n, probs,
           scratch.token_ids.data(), scratch.cutoffs.data());
    counts = scratch.counts.download(stream);
  }
  plan.expert_offsets_host.assign(size_t(e) + 1, 0);
  for (int i = 0; i < e; ++i)
    plan.expert_offsets_host[size_t(i) + 1] = plan.expert_offsets_host[i] + counts[i];
  plan.expert_offsets.upload(std::span<const int>(plan.expert_offsets_host), stream);
  const int S = plan.expert_offsets_host.back();
  plan.slot_token.resize(S);
  plan.slot_gate.resize(S);
  if (S > 0) {
    launch(write_kernel, e, kThreads, 0, stream, plan.slot_token.data(), plan.slot_gate.data(),
           plan.expert_offsets.data(), rule, n, probs, scratch.token_ids.data(),
           scratch.cutoffs.data());
  }
  build_inverse_index(plan, stream);  // nothing waits: the uploads above were staged
}

}  // namespace ecmoe::cuda
