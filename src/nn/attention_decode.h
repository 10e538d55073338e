// Attention of one new query over a KV cache, for incremental decoding (model/kv_decoder.h): the
// last row of causal attention_forward, with the keys and values of the earlier positions kept
// instead of recomputed. Per head h, over the cached positions j = 0..length-1 (the new token's
// own key and value included: the caller appends them first):
//   out_h = Σ_j softmax_j(q_h · k_{j,h} / sqrt(head_dim)) · v_{j,h}
// fp32 throughout, whatever the model's precision: the decoder runs its dense ops in fp32
// (docs/causal.md). Saves nothing (there is no backward).
#pragma once

namespace ecmoe::nn {

struct AttentionDecodeConfig {
  int length = 0;  // cached positions, the new one included
  int n_heads = 0;
  int head_dim = 0;
  int model_dim() const { return n_heads * head_dim; }
};

// out: [d], d = n_heads·head_dim; q: [d]; keys, values: [>= length, d], row j the key (value) of
// position j; head h at columns h·head_dim.. of each (attention.h's layout). Per head, in order:
// each score a sequential dot product over head_dim, times the scale; the maximum subtracted, the
// exponentials summed over j in order; each probability divided by the sum; out summed over j in
// order. Heads one after another on the caller's thread (one row: too little to share).
void attention_decode(float* out, const float* q, const float* keys, const float* values,
                      const AttentionDecodeConfig& cfg);

// Throws unless the sizes are positive.
void check_attention_decode_config(const AttentionDecodeConfig& cfg);

}  // namespace ecmoe::nn
