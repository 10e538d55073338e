#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"
#include "cuda/loss.h"
#include "nn/cross_entropy.h"

namespace ecmoe::cuda {

namespace {

constexpr int kRowThreads = 256;    // a block per row of the vocabulary
constexpr int kLossThreads = 1024;  // the one block that sums the loss

// Block r: logsumexp[r] = max + log Σ exp(z − max), thread j summing columns j, j + 256, ... in
// order, then the block's fixed tree.
__global__ void logsumexp_kernel(float* logsumexp, const float* logits, const int* targets,
                                 int vocab) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  if (targets[r] == nn::kIgnoreIndex) {  // the whole block
    if (threadIdx.x == 0) logsumexp[r] = 0.f;
    return;
  }
  const float* z = logits + r * vocab;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, z[j]);
  m = block_max(m, shared);
  float sum = 0.f;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(z[j] - m);
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) logsumexp[r] = m + logf(sum);
}

// One block, rows j, j + 1024, ... per thread, then the block's fixed tree: the loss Σ over
// counted rows of (logsumexp − z[target]) in double, the number of counted rows, and the first
// row whose target is neither the ignore index nor in [0, vocab) (rows when there is none; an
// integer minimum, the same whatever the order). result = {loss / count, count, that row}.
__global__ void loss_kernel(double* result, const float* logsumexp, const float* logits,
                            const int* targets, int rows, int vocab) {
  __shared__ double shared[32];
  __shared__ int first_bad;
  if (threadIdx.x == 0) first_bad = rows;
  double acc = 0.0, count = 0.0;
  int bad = rows;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    const int t = targets[r];
    if (t == nn::kIgnoreIndex) continue;
    if (t < 0 || t >= vocab) {
      bad = min(bad, r);
      continue;
    }
    acc += double(logsumexp[r]) - double(logits[int64_t(r) * vocab + t]);
    count += 1.0;
  }
  const double total = block_sum(acc, shared);  // its barriers order first_bad's initialisation
  const double counted = block_sum(count, shared);
  if (bad < rows) atomicMin(&first_bad, bad);
  __syncthreads();
  if (threadIdx.x == 0) {
    result[0] = counted > 0 ? total / counted : 0.0;
    result[1] = counted;
    result[2] = double(first_bad);
  }
}

// Block r: g = scale · exp(z − logsumexp), minus scale at the target; 0 on ignored rows. Each
// element is read and written by one thread, so dlogits may be logits.
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits,
                                              const float* logsumexp, const int* targets,
                                              float scale, int vocab) {
  const int64_t r = blockIdx.x;
  const int t = targets[r];
  float* g = dlogits + r * vocab;
  if (t == nn::kIgnoreIndex) {
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) g[j] = 0.f;
    return;
  }
  const float* z = logits + r * vocab;
  const float lse = logsumexp[r];
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    // The CPU's three roundings: the exponential, times scale, minus scale at the target (no
    // fused multiply-add).
    const float v = __fmul_rn(expf(z[j] - lse), scale);
    g[j] = j == t ? v - scale : v;
  }
}

}  // namespace

void cross_entropy_forward(double* result, float* logsumexp, const float* logits,
                           const int* targets, int rows, int vocab, cudaStream_t stream) {
  if (rows == 0) {
    ECMOE_CUDA_CHECK(cudaMemsetAsync(result, 0, 3 * sizeof(double), stream));  // 0.0 each
    return;
  }
  launch(logsumexp_kernel, rows, kRowThreads, 0, stream, logsumexp, logits, targets, vocab);
  launch(loss_kernel, 1, kLossThreads, 0, stream, result, logsumexp, logits, targets, rows, vocab);
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const int* targets, int64_t count, float dloss, int rows, int vocab,
                            cudaStream_t stream) {
  if (rows == 0 || vocab == 0) return;
  const float scale = count ? dloss / float(count) : 0.f;
  launch(cross_entropy_backward_kernel, rows, kRowThreads, 0, stream, dlogits, logits, logsumexp,
         targets, scale, vocab);
}

}  // namespace ecmoe::cuda
