// A pre-LayerNorm transformer whose FFNs are MoE layers (dense ones through the same code):
//   h = embed(tokens) + positions
//   for each layer l:  h += attn(ln1(h));  h += ffn_l(ln2(h))
//   logits = ln_f(h) · E^T   (output tied to the token embedding E)
// Forward keeps every activation for backward; backward mirrors it line for line.
// Tensor names (one table, in this order; docs/checkpoint-format.md lists them with shapes):
//   embed.tokens [V, d], embed.positions [T, d],
//   layers.L.ln1.gain/bias [d], layers.L.attn.qkv.weight [d, 3d], layers.L.attn.qkv.bias [3d],
//   layers.L.attn.out.weight [d, d], layers.L.attn.out.bias [d], layers.L.ln2.gain/bias [d],
//   layers.L.ffn.router.weight [d, e] (MoE with a router), layers.L.ffn.experts.w1 [e, d, f],
//   layers.L.ffn.experts.w2 [e, f, d], final_ln.gain/bias [d].
// A dense layer's FFN is one expert (experts.w1 [1, d, f], no router); nothing has an FFN bias.
// Initialisation (init_params), GPT-2 style, a pure function of the seed (tensor i of the table
// draws from Rng(seed, i)):
//   every matrix (embed.*, attn.*.weight, router.weight, experts.w1/w2)  N(0, init_std²);
//   the projections that write into the residual stream, attn.out.weight and experts.w2, are
//   further scaled by 1/sqrt(2·n_layers), so the stream's variance does not grow with depth;
//   biases 0, LayerNorm gains 1. With init_std 0.02 the router starts near uniform (scores ≈ 1/e).
// Not thread-safe: the model owns the activations of its last forward.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_table.h"
#include "model/model_config.h"
#include "moe/moe_layer.h"

namespace ecmoe {

// A batch of B sequences of length T (T <= seq_len), row-major [B, T].
struct Batch {
  int batch_size = 0;
  int seq_len = 0;
  std::vector<int32_t> tokens;   // [B, T] input ids
  std::vector<int32_t> targets;  // [B, T] target ids, -1 where no loss is taken
  // [B] optional key-padding lengths (empty: all T valid). Padded positions are masked as keys
  // only: they still flow through the FFNs and take part in routing (expert choice may spend
  // slots on them), so give them target -1 and prefer batches without padding for MoE.
  std::vector<int32_t> valid_len;
  int64_t token_count() const { return int64_t(batch_size) * seq_len; }
};

struct ForwardResult {
  double loss = 0;     // lm_loss + weighted auxiliary losses: what backward differentiates
  double lm_loss = 0;  // mean cross-entropy over counted positions
  int64_t counted = 0;
  AuxLosses aux;                          // summed over MoE layers
  std::vector<RoutingStats> layer_stats;  // one per layer (dense layers included)
};

class Transformer {
 public:
  explicit Transformer(const ModelConfig& config);
  ~Transformer();
  Transformer(Transformer&&) noexcept;  // activations move with the model (heap, not copied)
  Transformer& operator=(Transformer&&) noexcept;
  const ModelConfig& config() const { return config_; }
  const TensorTable& table() const { return table_; }
  void init_params(FlatBuffer& params, uint64_t seed) const;

  // training: routers use the training capacity factor and jitter (noise stream from seed).
  ForwardResult forward(const FlatBuffer& params, const Batch& batch, bool training, uint64_t seed);
  // Gradient of the last forward's loss, accumulated (+=) into grads. Once per forward (the
  // logits buffer becomes their gradient); params must be the forward's.
  void backward(const FlatBuffer& params, FlatBuffer& grads);

  // Expert parallelism for every MoE layer (MoeLayer::set_comm): each rank gives forward its own
  // tokens and gets the gradient of its own loss; the caller averages gradients over ranks.
  void set_comm(const dist::Comm* comm);

  // Final hidden states [B·T, d] (after final_ln) of the last forward, for task heads.
  const float* final_hidden() const;

  // Layer l's FFN (its routing plan and scores of the last forward), for tests and statistics.
  const MoeLayer& ffn_layer(int layer) const { return ffn_.at(layer); }
  static std::string layer_prefix(int layer);  // "layers.L."

 private:
  struct Activations;
  // Offsets (in floats) of one layer's tensors in any flat buffer of the table.
  struct LayerOffsets {
    int64_t ln1_gain, ln1_bias, qkv_w, qkv_b, out_w, out_b, ln2_gain, ln2_bias;
    int64_t router = -1;  // -1: no router (dense, hash)
    int64_t w1, w2;
  };
  ModelConfig config_;
  TensorTable table_;
  std::vector<LayerOffsets> layers_;
  int64_t embed_tokens_ = 0, embed_positions_ = 0, final_gain_ = 0, final_bias_ = 0;
  std::vector<MoeLayer> ffn_;
  std::unique_ptr<Activations> act_;
};

}  // namespace ecmoe
