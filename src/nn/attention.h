// Multi-head scaled dot-product self-attention core: softmax(Q·Kᵀ / sqrt(head_dim) + mask) · V,
// per head, on packed projections (the Q, K, V and output projections are nn::linear layers).
#pragma once
#include "core/precision.h"

namespace ecmoe::nn {

struct AttentionConfig {
  int batch = 0;
  int seq_len = 0;
  int n_heads = 0;
  int head_dim = 0;
  bool causal = false;  // query t sees keys 0..t (decoder); otherwise all keys (encoder)
  // kBf16: the score and value GEMMs (and their backward) take bf16 operands, so the
  // probabilities enter P·V rounded to bf16; softmax and its backward stay fp32.
  Precision precision = Precision::kFp32;
  int model_dim() const { return n_heads * head_dim; }
};

// qkv: [batch, seq_len, 3·d] with d = n_heads·head_dim, each row laid out [q | k | v] and head h
// at columns h·head_dim.. of each part (what one linear layer of width 3·d produces).
// out: [batch, seq_len, d], heads side by side in the same layout.
// probs: [batch, n_heads, seq_len, seq_len], the attention probabilities (row = query), saved
// for the backward pass; masked entries are exactly 0.
// valid_len: nullptr, or [batch] key padding lengths in [1, seq_len]: keys at positions
// >= valid_len[b] are masked for every query of sequence b (padded queries still get an output,
// computed from the valid keys; the caller ignores it).
// Parallel over (batch, head) pairs, each computed by one thread: results are bitwise identical
// at any thread count.
void attention_forward(float* out, float* probs, const float* qkv, const AttentionConfig& cfg,
                       const int* valid_len = nullptr);
// Accumulates (+=) into dqkv [batch, seq_len, 3·d].
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs,
                        const AttentionConfig& cfg, const int* valid_len = nullptr);

// Throws unless the sizes are positive and every valid length is in [1, seq_len].
void check_attention_config(const AttentionConfig& cfg, const int* valid_len);

}  // namespace ecmoe::nn
