// The attention half of a pre-LayerNorm block, with its saved activations:
//   h_out = h_in + attn(ln1(h_in)) · Wo + bo,   attn on qkv = ln1(h_in) · Wqkv + bqkv
// h_in, h_out [rows = batch·seq_len, d]; the FFN half is an MoeLayer (model/transformer.cpp).
#pragma once
#include "nn/attention.h"
#include "nn/backend.h"
#include "nn/buffer.h"

namespace ecmoe {

struct AttentionBlockWeights {
  const float* ln_gain = nullptr;  // [d]
  const float* ln_bias = nullptr;  // [d]
  const float* qkv_w = nullptr;    // [d, 3d]
  const float* qkv_b = nullptr;    // [3d]
  const float* out_w = nullptr;    // [d, d]
  const float* out_b = nullptr;    // [d]
};

struct AttentionBlockGrads {
  float* ln_gain = nullptr;
  float* ln_bias = nullptr;
  float* qkv_w = nullptr;
  float* qkv_b = nullptr;
  float* out_w = nullptr;
  float* out_b = nullptr;
};

// What forward keeps for backward, in the backend's memory; sized once per shape (resize to the
// same size is free).
struct AttentionBlockActivations {
  // [rows, d], or as little as the backend keeps of it (be.attention_ln_floats(cfg); CUDA's flash
  // path: none, the projection's bf16 copy of it is in qkv_saved)
  nn::Buffer<float> ln_out;
  nn::Buffer<float> ln_mean;  // [rows]
  nn::Buffer<float> ln_rstd;  // [rows]
  // [rows, 3d], or as little as the backend keeps of it (be.attention_qkv_floats(cfg); CUDA's
  // flash attention: none, its bf16 copy is in `saved`)
  nn::Buffer<float> qkv;
  // The attention's state for its backward: be.attention_saved_floats(cfg) floats (the CPU's
  // probabilities [batch, heads, T, T]; CUDA's flash attention the logsumexp [batch, heads, T]).
  nn::Buffer<float> saved;
  nn::Buffer<float> att;  // [rows, d] attention output before the output projection
  // The two projections' states for their backward: be.linear_saved_floats (the CPU: none; CUDA
  // in bf16: the bf16 copies of ln_out and att).
  nn::Buffer<float> qkv_saved, out_saved;
  void resize(nn::Backend& be, const nn::AttentionConfig& cfg);
};

// Backward temporaries, shared by every layer (one backward at a time).
struct AttentionBlockScratch {
  nn::Buffer<float> d_att;  // [rows, d]: d(att), then reused for d(ln_out)
  nn::Buffer<float> d_qkv;  // [rows, 3d]
  void resize(nn::Backend& be, const nn::AttentionConfig& cfg);
};

// h_in [rows, d] -> h_out [rows, d] (overwritten; must not alias h_in). valid_len: [batch] key
// padding lengths or nullptr. The ops run on `be`, where every pointer lives.
void attention_block_forward(nn::Backend& be, float* h_out, AttentionBlockActivations& act,
                             const float* h_in, const AttentionBlockWeights& w,
                             const nn::AttentionConfig& cfg, const int* valid_len);

// dh [rows, d] holds dL/dh_out on entry and dL/dh_in on return: the residual passes dh through
// unchanged and the block's own path is added to it. Weight gradients accumulate (+=).
void attention_block_backward(nn::Backend& be, float* dh, AttentionBlockGrads& g,
                              AttentionBlockScratch& scratch, const AttentionBlockActivations& act,
                              const float* h_in, const AttentionBlockWeights& w,
                              const nn::AttentionConfig& cfg, const int* valid_len);

}  // namespace ecmoe
