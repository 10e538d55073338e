// Incremental decoding for decoder models with a KV cache: the forward of one new token given
// every layer's keys and values at the earlier positions, so generating n tokens costs O(n) token
// forwards instead of O(n²). Each step does per row what Transformer::forward does (embedding,
// LayerNorm, QKV projection, causal attention over positions 0..p, output projection, the layer's
// FFN on the one token, final LayerNorm, tied output), so its logits equal recomputing the whole
// prefix up to float rounding (tests/model/test_kv_decoder.cpp).
// Routing must be causal per token (docs/causal.md): dense, hash, expert_threshold (cutoffs from
// the router state), top-1/top-2 (each token is its own routing group, so capacity never binds).
// Expert choice and capped expert choice are refused: they need the whole group.
#pragma once
#include <cstdint>
#include <vector>

#include "core/aligned.h"
#include "model/transformer.h"

namespace ecmoe {

class KvDecoder {
 public:
  // params/state: the model's parameter and router-state buffers; they must outlive the decoder.
  KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state);

  // Appends `token` at position position() and returns the logits [V] of the next token.
  const std::vector<float>& step(int32_t token);
  int position() const { return position_; }
  void reset() { position_ = 0; }
  // Routing of the last step, per layer (dense layers included): plan and scores of its token.
  const MoeLayer& ffn_layer(int layer) const { return ffn_.at(layer); }

 private:
  const ModelConfig& config_;
  const FlatBuffer& params_;
  const FlatBuffer& state_;
  std::vector<MoeLayer> ffn_;
  std::vector<FloatVec> keys_, values_;  // per layer [seq_len, d]
  int position_ = 0;
  // One row's temporaries.
  FloatVec h_, ln_, qkv_, att_, tmp_, mean_, rstd_;
  std::vector<float> scores_, logits_;
};

}  // namespace ecmoe
