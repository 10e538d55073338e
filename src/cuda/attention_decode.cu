// q, out are [d]; keys, values are [length, d]; probs is [H, length]; per head h the columns
// h·hd..(h+1)·hd
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/attention_decode.h"
#include "cuda/cuda_check.h"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;  // fixed: block_sum's tree, hence the bits, depend on it

// Block h: head h's probabilities over the keys 0..len-1, then its output columns.
__global__ void attention_decode_kernel(float* out, float* probs, const float* q, const float* keys,
                                        const float* values, int len, int hd, float scale) {
  __shared__ float shared[32];
  const int h = blockIdx.x;
  const int64_t d = int64_t(gridDim.x) * hd;
  const float* qh = q + int64_t(h) * hd;
  float* p = probs + int64_t(h) * len;
  float top = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const float* k = keys + j * d + int64_t(h) * hd;
    float s = 0.f;
    for (int i = 0; i < hd; ++i) s = fmaf(qh[i], k[i], s);
    p[j] = s * scale;
    top = fmaxf(top, p[j]);
  }
  top = block_max(top, shared);  // len >= 1: finite
  float sum = 0.f;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const float e = expf(p[j] - top);
    p[j] = e;
    sum += e;
  }
  sum = block_sum(sum, shared);
  for (int j = threadIdx.x; j < len; j += blockDim.x) p[j] = p[j] / sum;
  __syncthreads();  // every probability written before any thread reads them all
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    const float* v = values + int64_t(h) * hd + i;
    float acc = 0.f;
    for (int j = 0; j < len; ++j) acc = fmaf(p[j], v[j * d], acc);
    out[int64_t(h) * hd + i] = acc;
  }
}

}  // namespace

void attention_decode(float* out, const float* q, const float* keys, const float* values,
                      const nn::AttentionDecodeConfig& cfg, AttentionDecodeScratch& scratch,
                      cudaStream_t stream) {
  const int len = cfg.length, H = cfg.n_heads, hd = cfg.head_dim;
  if (len <= 0 || H <= 0 || hd <= 0) return;
  // Grown ahead (twice the need): a reallocation per generated token would wait for the device.
  const size_t need = size_t(H) * size_t(len);
  if (need > scratch.probs.capacity()) scratch.probs.reserve(2 * need);
  scratch.probs.resize(need);
  const float scale = 1.f / std::sqrt(float(hd));  // the CPU's constant
  launch(attention_decode_kernel, H, kThreads, 0, stream, out, scratch.probs.data(), q, keys,
         values, len, hd, scale);
}

}  // namespace ecmoe::cuda
