// nn/attention.h's attention core on the GPU as fused flash-style kernels, forward beside
// backward, for bf16 mode: the [B, H, T, T] scores and probabilities never reach global memory.
// The same layouts as cuda/attention.h: qkv [B, T, 3·d] (each row [q | k | v], head h at columns
// h·hd of each part), out [B, T, d], valid_len a device [B] of key padding lengths or nullptr,
// causal for the decoder; sizes and valid lengths checked on the host before the call.
//
// Tiles of 64 queries × 64 keys, a block of 4 warps per (query or key tile, sequence, head), each
// warp 16 rows, the products on tensor cores (PTX mma.m16n8k16, bf16 operands, fp32
// accumulation; cuda/mma_fragments.cuh), the scores, probabilities and outputs of a warp's rows in
// its registers, only the K and V (Q, dO) tiles in shared memory, the loop's next ones loading
// (cp.async, cuda/async_copy.cuh) while a block computes on the current ones:
// - forward: per query tile, loop over the key tiles (causal: up to the diagonal) with an online
//   softmax (running max and sum per row, the output rescaled in registers); saves the rows'
//   logsumexp lse [B, H, T];
// - backward: D = rowsum(bf16(dO) ⊙ O) per row, then a kernel per key tile (dK, dV: loop over
//   the query tiles) and one per query tile (dQ: loop over the key tiles), each recomputing
//   P = exp(S − lse). Every gradient element has one owner block, which adds (+=) or stores its
//   sum: no atomics, the same bits run to run.
// Precision: Q, K, V, dO and dS enter the products in bf16 (the CPU's bf16 rules); the softmax is
// fp32, but P enters P·V rounded to bf16 before its normalisation (the CPU rounds the normalised
// P), and the softmax backward's row term is rowsum(dO ⊙ O) (the CPU's rowsum(P ⊙ dP)): within a
// few bf16 steps of the CPU op, not bitwise.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "nn/attention.h"
#include "nn/grad_write.h"

namespace ecmoe::cuda {

// Whether the fused kernels take cfg: bf16, head_dim a multiple of 16 up to 128. Otherwise the
// caller uses cuda/attention.h.
bool flash_attention_supports(const nn::AttentionConfig& cfg);

struct FlashAttentionScratch {
  DeviceVec<uint16_t> dout16;  // the bf16 copy of dout
  DeviceVec<float> row_dot;    // [B, H, T]: rowsum(bf16(dO) ⊙ O), the backward's D
};

// What the forward keeps for its backward (nn::Backend's `saved`), in floats: the rows'
// logsumexp lse [B, H, T] (each row's logsumexp of its scaled scores over its visible keys),
// then, from the next 16-byte boundary, the bf16 copy of qkv [B, T, 3·d] that the forward's
// products read. The backward reads that copy rather than rounding qkv again (on `gpu-small`,
// 151 MB a layer kept, 453 MB of traffic a layer saved).
int64_t flash_attention_saved_floats(const nn::AttentionConfig& cfg);
// qkv -> out (written) and saved (written; 16-byte aligned, flash_attention_saved_floats(cfg)):
// qkv rounded into saved's bf16 copy, then flash_attention_forward_saved.
void flash_attention_forward(float* out, float* saved, const float* qkv,
                             const nn::AttentionConfig& cfg, const int* valid_len,
                             const Context& ctx);
// Where saved keeps the bf16 qkv [B, T, 3·d] (16-byte aligned): a producer that writes it there
// (the qkv projection, cuda::linear_forward_bf16) spares the fp32 qkv's write and its read.
uint16_t* flash_attention_qkv16(float* saved, const nn::AttentionConfig& cfg);
// The forward from the bf16 qkv already in saved (flash_attention_qkv16): out and saved's lse.
void flash_attention_forward_saved(float* out, float* saved, const nn::AttentionConfig& cfg,
                                   const int* valid_len, const Context& ctx);
// dqkv [B, T, 3·d] (+= for kAdd; = for kOverwrite, the bits of adding into zeros, without a fill
// or a read of dqkv: 7.2 GB of traffic a step on `gpu-small`, counted) from dout [B, T, d] and
// the forward's out and saved (qkv is not read again: its bf16 copy is in saved).
void flash_attention_backward(float* dqkv, const float* dout, const float* out, const float* saved,
                              const nn::AttentionConfig& cfg, const int* valid_len,
                              nn::GradWrite dqkv_write, FlashAttentionScratch& scratch,
                              const Context& ctx);

}  // namespace ecmoe::cuda
