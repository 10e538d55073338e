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
// Router state (not parameters: never optimised or decayed; its own table and buffer): for each
// layer routed by expert choice or thresholds, layers.L.ffn.router.cutoff [e], each expert's
// score cutoff for threshold routing (docs/causal.md); -1 until calibrated.
// A dense layer's FFN is one expert (experts.w1 [1, d, f], no router); nothing has an FFN bias.
// Initialisation (init_params), GPT-2 style, a pure function of the seed (tensor i of the table
// draws from Rng(seed, i); an expert shard draws its rows' values, so any number of ranks starts
// from the same model):
//   every matrix (embed.*, attn.*.weight, router.weight, experts.w1/w2)  N(0, init_std²);
//   the projections that write into the residual stream, attn.out.weight and experts.w2, are
//   further scaled by 1/sqrt(2·n_layers), so the stream's variance does not grow with depth;
//   biases 0, LayerNorm gains 1. With init_std 0.02 the router starts near uniform (scores ≈ 1/e).
// Not thread-safe: the model owns the activations of its last forward.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor_table.h"
#include "model/model_config.h"
#include "moe/moe_layer.h"
#include "nn/backend.h"

namespace ecmoe {

// Where a batch stands in its training step when the step's batch is cut into equal parts: MPI
// ranks and gradient-accumulation micro-batches (train/data_parallel.h, step_parts). The
// gradient backward gives is that of the batch's share of the step's loss, so that the parts'
// gradients sum to the whole batch's: its cross-entropy summed over its counted positions and
// divided by the step's count, plus its auxiliary losses divided by the number of parts (equal
// parts: the step's auxiliary losses are their mean). The defaults: the batch is the whole step.
struct StepShare {
  int64_t first_token = 0;   // its first token's index in the step's batch (router jitter noise)
  int64_t step_counted = 0;  // the step's counted targets, the cross-entropy's divisor; 0: its own
  int parts = 1;             // parts of the step
};

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
  StepShare share;  // its part of a training step (the whole step by default)
  int64_t token_count() const { return int64_t(batch_size) * seq_len; }
};

struct ForwardResult {
  // lm_loss + weighted auxiliary losses: what backward differentiates (of a part of a step, its
  // share: StepShare)
  double loss = 0;
  double lm_loss = 0;  // mean cross-entropy over the batch's counted positions
  int64_t counted = 0;
  AuxLosses aux;                          // summed over MoE layers
  std::vector<RoutingStats> layer_stats;  // one per layer (dense layers included)
};

class Transformer {
 public:
  // With a parallel communicator (expert parallelism, docs/architecture.md) every MoE layer's
  // experts are split over the ranks: table() declares this rank's experts only (TensorSpec::
  // full_shape gives the whole tensor), so parameters, gradients and optimizer state of the
  // experts are stored once across the job; everything else is replicated. Each rank gives
  // forward its own tokens and gets the gradient of their share of the step's loss (StepShare;
  // reduce_gradients then makes the step's gradient). The communicator must outlive the model.
  explicit Transformer(const ModelConfig& config, const dist::Comm* comm = nullptr);
  ~Transformer();
  Transformer(Transformer&&) noexcept;  // activations move with the model (heap, not copied)
  Transformer& operator=(Transformer&&) noexcept;
  const ModelConfig& config() const { return config_; }
  const TensorTable& table() const { return table_; }
  void init_params(FlatBuffer& params, uint64_t seed) const;
  const TensorTable& state_table() const { return state_table_; }
  bool has_cutoffs() const { return !state_table_.specs().empty(); }
  void init_state(FlatBuffer& state) const;  // every cutoff -1: not calibrated

  // training: routers use the training capacity factor and jitter (noise stream from seed).
  ForwardResult forward(const FlatBuffer& params, const Batch& batch, bool training, uint64_t seed);
  // The same with the router state (required by expert_threshold routing). `router`, if given,
  // routes every routed layer by that router instead of the configured one, over the same
  // weights (threshold training routes its first steps by expert choice: MoeInput::router).
  ForwardResult forward(const FlatBuffer& params, const FlatBuffer& state, const Batch& batch,
                        bool training, uint64_t seed,
                        std::optional<RouterKind> router = std::nullopt);
  // Moves each cutoff toward its layer's mean k-th selected score of a forward (layer_stats from
  // ForwardResult or merged over an evaluation): cutoff += rate · (target − cutoff); a cutoff not
  // yet calibrated, or rate 1, takes the target itself.
  void update_cutoffs(FlatBuffer& state, const std::vector<RoutingStats>& layer_stats,
                      float rate) const;
  // Gradient of the last forward's loss (of its batch's share of the step's loss: StepShare),
  // accumulated (+=) into grads. Once per forward (the logits buffer becomes their gradient);
  // params must be the forward's.
  void backward(const FlatBuffer& params, FlatBuffer& grads);

  // The same two on parameters and gradients in the dense backend's memory (a device's copy of a
  // FlatBuffer of table(): table().total_floats() floats at its offsets); the router state, if
  // any, stays on the host. The MoE layers must run where the parameters are (set_moe_backends).
  ForwardResult forward_on_backend(const float* params, const FlatBuffer* state, const Batch& batch,
                                   bool training, uint64_t seed,
                                   std::optional<RouterKind> router = std::nullopt);
  void backward_on_backend(const float* params, float* grads);
  // forward_on_backend in two halves, so that a device's training step waits for the device
  // once: start_forward queues the whole forward, loss head included, and finish_forward waits
  // for its values (the loss, the MoE layers' losses and statistics) and sums them.
  // backward_on_backend may be queued in between: it needs none of those values on the host.
  struct PendingForward {
    std::vector<MoeOutput> layers;
  };
  PendingForward start_forward_on_backend(const float* params, const FlatBuffer* state,
                                          const Batch& batch, bool training, uint64_t seed,
                                          std::optional<RouterKind> router = std::nullopt);
  ForwardResult finish_forward(PendingForward& pending);

  // Final hidden states [B·T, d] (after final_ln) of the last forward, for task heads; in the
  // dense backend's memory.
  const float* final_hidden() const;

  // For task heads: forward stops at the final hidden states (no LM head; batch.targets may be
  // empty); loss holds the weighted auxiliary losses only. backward_from_hidden takes the task
  // loss's gradient d_hidden [B·T, d] = dL/d(final_hidden) and accumulates (+=) every parameter
  // gradient into grads, the auxiliary losses' included. Once per forward_hidden.
  // d_hidden is in the dense backend's memory (the host's for nn::cpu_backend()).
  ForwardResult forward_hidden(const FlatBuffer& params, const Batch& batch, bool training,
                               uint64_t seed);
  void backward_from_hidden(const FlatBuffer& params, FlatBuffer& grads, const float* d_hidden);
  // The same two on parameters and gradients in the dense backend's memory, as
  // forward_on_backend / backward_on_backend.
  ForwardResult forward_hidden_on_backend(const float* params, const Batch& batch, bool training,
                                          uint64_t seed);
  void backward_from_hidden_on_backend(const float* params, float* grads, const float* d_hidden);
  // log p(target) at each position of the last forward, [B·T] (0 where the target is -1), for
  // per-position measures such as leakage. Before backward (which reuses the logits).
  std::vector<float> target_log_probs() const;

  // Where the dense ops run (embeddings, LayerNorm, attention, linear layers, the LM head):
  // nn::cpu_backend() unless set. params, grads and the activations are then kept in its
  // memory (nn/buffer.h). Changing the backend gives the activations back to the old one at once
  // (a forward must follow), so a backend must outlive only its own use: until another is set or
  // the model is destroyed. The MoE layers' seam is MoeLayer::set_backend (moe/moe_backend.h).
  void set_nn_backend(nn::Backend& backend);
  nn::Backend& nn_backend() const { return *nn_; }
  // Gives every MoE layer its own backend from `make` (cuda::make_moe_backend), or takes them
  // back to the CPU when `make` is empty.
  void set_moe_backends(const std::function<std::unique_ptr<MoeBackend>()>& make);
  // Every MoE layer adds its phases' times (router, routing, dispatch, each GEMM, ...) to
  // `times` (nullptr: off). For profiles (`ecmoe bench train`).
  void set_moe_phase_times(PhaseTimes* times);

  // Offsets (in floats) of the tensors in any flat buffer of table(): one layer's, and the
  // others'. For code that walks the parameters itself (model/kv_decoder.h).
  struct LayerOffsets {
    int64_t ln1_gain, ln1_bias, qkv_w, qkv_b, out_w, out_b, ln2_gain, ln2_bias;
    int64_t router = -1;  // -1: no router (dense, hash)
    int64_t w1, w2;
  };
  struct Offsets {
    int64_t embed_tokens = 0, embed_positions = 0, final_gain = 0, final_bias = 0;
  };
  const LayerOffsets& layer_offsets(int layer) const { return layers_.at(layer); }
  const Offsets& offsets() const { return offsets_; }

  // Layer l's FFN (its routing plan and scores of the last forward), for tests and statistics.
  const MoeLayer& ffn_layer(int layer) const { return ffn_.at(layer); }
  static std::string layer_prefix(int layer);  // "layers.L."

 private:
  struct Activations;
  // Everything up to the final hidden states; state: the router state (nullptr if none).
  // p, g: parameters and gradients at the table's offsets, in the dense backend's memory.
  // Returns the MoE layers' outputs, whose losses and statistics may still be on their way from
  // a device: finish_layers() waits for them and sums them.
  std::vector<MoeOutput> forward_trunk(const float* p, const FlatBuffer* state, const Batch& batch,
                                       bool training, uint64_t seed,
                                       std::optional<RouterKind> router = std::nullopt);
  ForwardResult finish_layers(std::vector<MoeOutput>& pending);
  void backward_impl(const float* p, float* g);
  void backward_trunk(const float* p, float* g);  // from act_->d_tmp
  PendingForward start_forward(const float* p, const FlatBuffer* state, const Batch& batch,
                               bool training, uint64_t seed,
                               std::optional<RouterKind> router = std::nullopt);
  ModelConfig config_;
  TensorTable table_;
  TensorTable state_table_;
  std::vector<LayerOffsets> layers_;
  Offsets offsets_;
  std::vector<MoeLayer> ffn_;
  nn::Backend* nn_ = &nn::cpu_backend();
  std::unique_ptr<Activations> act_;
};

}  // namespace ecmoe
