// Shared helpers for the model tests: tiny configurations, random batches, routing signatures.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/transformer.h"

namespace ecmoe::testing {

// A model small enough for finite differences: V 32, T 8 (table 10), d 16, 3 layers (dense, MoE,
// dense: the MoE layer is not the last, so every expert's output reaches the loss through the
// next attention, even where the counted positions all route alike), 2 heads, d_ff 32, 4 experts. A
// large init_std makes router scores far apart (few near-ties) and gradients well above float32
// noise.
inline ModelConfig tiny_config(ModelKind kind, RouterKind router, float init_std = 0.3f) {
  ModelConfig c;
  c.kind = kind;
  c.vocab_size = 32;
  c.seq_len = 10;
  c.d_model = 16;
  c.n_layers = 3;
  c.n_heads = 2;
  c.d_ff = 32;
  c.moe_every = 2;
  c.moe = default_moe_config(router);
  c.moe.n_experts = 4;
  c.init_std = init_std;
  return c;
}

// Encoder: masked LM, about `mask_rate` of the positions replaced by token 4 ([MASK]) with the
// original as target. Decoder: targets are the next tokens, -1 at each sequence's last position.
// Tokens are drawn from [5, V).
inline Batch random_batch(const ModelConfig& c, int batch_size, int seq_len, uint64_t seed,
                          float mask_rate = 0.3f) {
  Batch b;
  b.batch_size = batch_size;
  b.seq_len = seq_len;
  const int n = batch_size * seq_len;
  b.tokens.resize(n);
  b.targets.assign(n, -1);
  const Rng rng(seed, 7);
  for (int i = 0; i < n; ++i) b.tokens[i] = 5 + int32_t(rng.below(i, c.vocab_size - 5));
  if (c.kind == ModelKind::kEncoder) {
    const Rng mask(seed, 8);
    for (int i = 0; i < n; ++i)
      if (mask.uniform(i) < mask_rate || i == 0) {  // at least one counted position
        b.targets[i] = b.tokens[i];
        b.tokens[i] = 4;
      }
  } else {
    for (int s = 0; s < batch_size; ++s)
      for (int t = 0; t + 1 < seq_len; ++t)
        b.targets[s * seq_len + t] = b.tokens[s * seq_len + t + 1];
  }
  return b;
}

// Every discrete routing decision of one layer's last forward: the plan (slots and their order),
// each token's choices (token choice, dropped ones included) and each token's top-1 expert (the
// load-balancing loss counts it). Equal signatures mean the loss is a smooth function between two
// points.
inline std::vector<int> routing_signature(const MoeLayer& layer) {
  const RoutingPlan& plan = layer.plan();
  std::vector<int> s = plan.expert_offsets;
  s.insert(s.end(), plan.slot_token.begin(), plan.slot_token.end());
  s.insert(s.end(), plan.token_choices.begin(), plan.token_choices.end());
  if (router_has_weights(layer.config().router)) {
    const int e = layer.config().n_experts;
    for (int t = 0; t < plan.n_tokens; ++t) {
      const float* p = layer.scores().data() + int64_t(t) * e;
      s.push_back(int(std::max_element(p, p + e) - p));
    }
  }
  return s;
}

inline std::vector<std::vector<int>> model_routing(const Transformer& model) {
  std::vector<std::vector<int>> r;
  for (int l = 0; l < model.config().n_layers; ++l)
    r.push_back(routing_signature(model.ffn_layer(l)));
  return r;
}

}  // namespace ecmoe::testing
