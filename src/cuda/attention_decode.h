// nn/attention_decode.h on the GPU: one new query row against a KV cache (incremental decoding,
// model/kv_decoder.h), with the CPU op's layouts: q, out [d], keys, values [>= length, d], head h
// at columns h·head_dim. fp32, as the CPU op. Sizes are checked on the host
// (nn::check_attention_decode_config).
//
// A block of 256 threads per head, in three passes over the cache:
// - the scores: a thread per key, its dot product sequential over head_dim (fmaf, as GCC
//   contracts the CPU's loop), times the scale, into a [n_heads, length] scratch in device memory
//   (any length: no shared-memory limit); their maximum by a fixed tree (block_max);
// - the exponentials expf(s − max), their sum by a fixed tree (block_sum: each thread's keys in
//   order, then the warps' tree), and each probability divided by it, as the CPU divides;
// - the output: a thread per column of the head, its sum over the keys in order (fmaf), the
//   CPU's order.
// No atomics: the same bits run to run. Within float tolerance of the CPU (CUDA's expf, the tree
// order of the exponentials' sum). Simple rather than fast: one row per call, the keys read once
// per pass; the cost is small beside the step's GEMMs.
#pragma once
#include <cuda_runtime.h>

#include "cuda/device_buffer.h"
#include "nn/attention_decode.h"

namespace ecmoe::cuda {

struct AttentionDecodeScratch {
  DeviceVec<float> probs;  // [n_heads, length]: the scores, then the probabilities
};

// nn::attention_decode: out [d] (written) from q [d] and the first cfg.length rows of keys and
// values, on `stream`.
void attention_decode(float* out, const float* q, const float* keys, const float* values,
                      const nn::AttentionDecodeConfig& cfg, AttentionDecodeScratch& scratch,
                      cudaStream_t stream);

}  // namespace ecmoe::cuda
