// Tokens t, experts i, groups g of `gs` consecutive tokens (the last may be shorter), chunks of
// kChunk tokens inside a group.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/aux_losses.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 256;

// The group layout of routing_groups(n, group_size).
struct GroupLayout {
  int size = 0;    // gs: tokens of every group but possibly the last
  int count = 0;   // G
  int chunks = 0;  // chunks per group: ceil(gs / kChunk)
  GroupLayout(int n, int group_size) {
    size = group_size <= 0 || group_size > n ? n : group_size;
    count = size > 0 ? (n + size - 1) / size : 0;
    chunks = (size + kChunk - 1) / kChunk;
  }
};

__device__ int group_tokens(int g, int gs, int n) { return min(gs, n - g * gs); }

// Per token: top-1 expert, logsumexp (float, the CPU's order), entropy and lse² (double).
__global__ void token_rows_kernel(int* top1, float* lse, double* token, const float* logits,
                                  const float* probs, int n, int e) {
  const int t = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* p = probs + int64_t(t) * e;
  const float* z = logits + int64_t(t) * e;
  int best = 0;
  for (int i = 1; i < e; ++i)
    if (p[i] > p[best]) best = i;
  double h = 0;
  for (int i = 0; i < e; ++i)
    if (p[i] > 0.f) h -= double(p[i]) * log(double(p[i]));
  float m = z[0];
  for (int i = 1; i < e; ++i) m = fmaxf(m, z[i]);
  float s = 0.f;
  for (int i = 0; i < e; ++i) s += expf(z[i] - m);
  const float l = m + logf(s);
  top1[t] = best;
  lse[t] = l;
  token[t] = h;
  token[n + t] = double(l) * double(l);
}

// Thread (c, i): over chunk c's tokens, the count of top-1 = i and the sum of scores of i, into
// chunks[c, i] and chunks[c, e + i].
__global__ void group_chunk_kernel(double* chunks, const int* top1, const float* probs, int n,
                                   int e, int gs, int chunks_per_group, int64_t items) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= items) return;
  const int64_t c = idx / e;
  const int i = int(idx % e);
  const int g = int(c / chunks_per_group), local = int(c % chunks_per_group);
  const int group_end = g * gs + group_tokens(g, gs, n);
  const int begin = g * gs + local * kChunk, end = min(begin + kChunk, group_end);
  double count = 0, sum = 0;
  for (int t = begin; t < end; ++t) {
    count += top1[t] == i ? 1.0 : 0.0;
    sum += double(probs[int64_t(t) * e + i]);
  }
  chunks[c * 2 * e + i] = count;
  chunks[c * 2 * e + e + i] = sum;
}

// Thread (g, i): the group's chunks in order; f_i = count / group size.
__global__ void group_sums_kernel(double* fractions, double* group_sums, const double* chunks,
                                  int n, int e, int gs, int chunks_per_group, int groups) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(groups) * e) return;
  const int g = int(idx / e), i = int(idx % e);
  double count = 0, sum = 0;
  for (int local = 0; local < chunks_per_group; ++local) {
    const double* c = chunks + (int64_t(g) * chunks_per_group + local) * 2 * e;
    count += c[i];
    sum += c[e + i];
  }
  fractions[idx] = count / group_tokens(g, gs, n);
  group_sums[idx] = sum;
}

// Thread c: entropy and lse² summed over tokens [c·kChunk, ...) in order.
__global__ void token_chunk_kernel(double* out, const double* token, int n, int n_chunks) {
  const int c = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n_chunks) return;
  double h = 0, z = 0;
  for (int t = c * kChunk; t < min(n, (c + 1) * kChunk); ++t) {
    h += token[t];
    z += token[n + t];
  }
  out[2 * c] = h;
  out[2 * c + 1] = z;
}

// One block: the load-balancing loss as the CPU forms it from f and the score sums (each group's
// term over its experts in order), and the token chunks; thread j takes groups and chunks j,
// j + blockDim, ... in order, then block_sum's fixed tree adds the threads' parts.
__global__ void finish_kernel(double* totals, const double* fractions, const double* group_sums,
                              const double* token_chunks, int n, int e, int gs, int groups,
                              int n_chunks) {
  __shared__ double shared[32];
  double lb = 0;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    const int size = group_tokens(g, gs, n);
    double s = 0;
    for (int i = 0; i < e; ++i)
      s += fractions[int64_t(g) * e + i] * group_sums[int64_t(g) * e + i] / size;
    lb += e * s;
  }
  double h = 0, z = 0;
  for (int c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    h += token_chunks[2 * int64_t(c)];
    z += token_chunks[2 * int64_t(c) + 1];
  }
  lb = block_sum(lb, shared);
  h = block_sum(h, shared);
  z = block_sum(z, shared);
  if (threadIdx.x == 0) {
    totals[0] = lb / groups;
    totals[1] = z;
    totals[2] = h;
  }
}

// dprobs[t, i] += w · e / (G · |g|) · f_{g,i}
__global__ void load_balance_backward_kernel(float* dprobs, const double* fractions, int n, int e,
                                             int gs, int groups, float weight) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(n) * e) return;
  const int t = int(idx / e), i = int(idx % e), g = t / gs;
  const double scale = double(weight) * e / (double(groups) * group_tokens(g, gs, n));
  dprobs[idx] += float(scale * fractions[int64_t(g) * e + i]);
}

// dlogits[t, i] += (w · 2 · lse_t / n) · probs[t, i]
__global__ void z_loss_backward_kernel(float* dlogits, const float* probs, const float* lse, int n,
                                       int e, float weight) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(n) * e) return;
  const float scale = weight * 2.f * lse[idx / e] / float(n);
  dlogits[idx] += scale * probs[idx];
}

}  // namespace

void aux_losses_forward(const float* logits, const float* probs, int n, int e, int group_size,
                        AuxScratch& s, cudaStream_t stream) {
  s.totals.resize(3);
  if (n <= 0 || e <= 0) {
    s.totals.zero(stream);
    return;
  }
  const GroupLayout groups(n, group_size);
  const int64_t group_chunks = int64_t(groups.count) * groups.chunks;
  const int token_chunks = (n + kChunk - 1) / kChunk;
  s.top1.resize(size_t(n));
  s.lse.resize(size_t(n));
  s.token.resize(2 * size_t(n));
  s.chunks.resize(size_t(group_chunks * 2 * e + 2 * token_chunks));
  s.fractions.resize(size_t(groups.count) * e);
  s.group_sums.resize(size_t(groups.count) * e);
  double* token_partials = s.chunks.data() + group_chunks * 2 * e;
  launch(token_rows_kernel, blocks_for(n, kThreads), kThreads, 0, stream, s.top1.data(),
         s.lse.data(), s.token.data(), logits, probs, n, e);
  launch(group_chunk_kernel, blocks_for(group_chunks * e, kThreads), kThreads, 0, stream,
         s.chunks.data(), s.top1.data(), probs, n, e, groups.size, groups.chunks, group_chunks * e);
  launch(group_sums_kernel, blocks_for(int64_t(groups.count) * e, kThreads), kThreads, 0, stream,
         s.fractions.data(), s.group_sums.data(), s.chunks.data(), n, e, groups.size, groups.chunks,
         groups.count);
  launch(token_chunk_kernel, blocks_for(token_chunks, kThreads), kThreads, 0, stream,
         token_partials, s.token.data(), n, token_chunks);
  launch(finish_kernel, 1, kThreads, 0, stream, s.totals.data(), s.fractions.data(),
         s.group_sums.data(), token_partials, n, e, groups.size, groups.count, token_chunks);
}

DeviceAux aux_losses_values(const double* totals, int n, AuxLossWeights weights) {
  DeviceAux out;
  if (n <= 0) return out;
  out.losses.load_balance = float(totals[0]);
  out.losses.z_loss = float(totals[1] / n);
  out.losses.weighted_total =
      weights.load_balance * out.losses.load_balance + weights.z_loss * out.losses.z_loss;
  out.entropy_sum = totals[2];
  return out;
}

void aux_losses_backward(float* dlogits, float* dprobs, const float* probs, int n, int e,
                         int group_size, AuxLossWeights weights, const AuxScratch& s,
                         cudaStream_t stream) {
  if (n <= 0 || e <= 0) return;
  const GroupLayout groups(n, group_size);
  const int64_t items = int64_t(n) * e;
  if (weights.load_balance != 0.f) {
    launch(load_balance_backward_kernel, blocks_for(items, kThreads), kThreads, 0, stream, dprobs,
           s.fractions.data(), n, e, groups.size, groups.count, weights.load_balance);
  }
  if (weights.z_loss != 0.f) {
    launch(z_loss_backward_kernel, blocks_for(items, kThreads), kThreads, 0, stream, dlogits, probs,
           s.lse.data(), n, e, weights.z_loss);
  }
}

}  // namespace ecmoe::cuda
