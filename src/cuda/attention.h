// nn/attention.h's attention core on the GPU, forward beside backward: softmax(Q·Kᵀ/√hd + mask)·V
// per (sequence, head) on the packed projections, with the CPU op's layouts: qkv [B, T, 3·d]
// (each row [q | k | v], head h at columns h·hd of each part), out [B, T, d], probs [B, H, T, T]
// saved for the backward (row = query; masked entries exactly 0), valid_len a device [B] of key
// padding lengths or nullptr, causal for the decoder. Sizes and valid lengths are checked on the
// host (nn::check_attention_config) before the call.
//
// The GEMMs (Q·Kᵀ, P·V; backward Pᵀ·dO, dO·Vᵀ, dS·K, dSᵀ·Q) are cuBLAS strided-batched: one
// call per head over every sequence (or, with more heads than sequences, per sequence over its
// heads), so a step launches O(heads) GEMMs per layer, not O(batch). The CPU skips the masked upper
// triangle by blocks of 128 queries; here every score is computed and the masked ones are written 0
// by the softmax, which adds only zeros to the later sums. The softmax and its backward run a warp
// per query row, the row's sums in nn/reduce.h's order. Precision as the CPU's: bf16 rounds the
// operands of every GEMM (Q, K, V, the probabilities entering P·V, dO and dS) and keeps the
// softmax fp32. Within float tolerance of the CPU (cuBLAS's order, CUDA's expf); the same bits
// run to run.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "nn/attention.h"

namespace ecmoe::cuda {

struct AttentionScratch {
  DeviceVec<uint16_t> qkv16, probs16, dout16;  // bf16 operands
  DeviceVec<float> dscores;                    // [pairs of one call, T, T]: dP, then dS
  DeviceVec<uint16_t> dscores16;               // the same, dS in bf16
};

// nn::attention_forward: qkv -> out (written) and probs (written).
void attention_forward(float* out, float* probs, const float* qkv, const nn::AttentionConfig& cfg,
                       const int* valid_len, AttentionScratch& scratch, const Context& ctx);
// nn::attention_backward: dqkv [B, T, 3·d] (+=) from dout [B, T, d], qkv and the saved probs.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs,
                        const nn::AttentionConfig& cfg, const int* valid_len,
                        AttentionScratch& scratch, const Context& ctx);

}  // namespace ecmoe::cuda
