// Incremental decoding for decoder models with a KV cache: the forward of one new token given
// every layer's keys and values at the earlier positions, so generating n tokens costs O(n) token
// forwards instead of O(n²). Each step does per row what Transformer::forward does (embedding,
// LayerNorm, QKV projection, causal attention over positions 0..p, output projection, the layer's
// FFN on the one token, final LayerNorm, tied output), so its logits equal recomputing the whole
// prefix up to float rounding (tests/model/test_kv_decoder.cpp).
// Routing must be causal per token (docs/causal.md): dense, hash, expert_threshold (cutoffs from
// the router state), top-1/top-2 (each token is its own routing group, so capacity never binds).
// Expert choice and capped expert choice are refused: they need the whole group.
//
// Where it runs: every op of a step goes through one nn::Backend (nn/backend.h) and each layer's
// FFN through its MoeLayer, on a MoeBackend when given (moe/moe_backend.h), as
// Transformer::forward_on_backend does; the CPU is the same code on nn::cpu_backend() with host
// MoE layers, the GPU cuda::make_nn_backend() with cuda::make_moe_backend() (`ecmoe generate
// --device cuda`; tests/cuda/test_cuda_decode.cpp). The parameters and the cache live in the
// backend's memory: the parameters copied there once (read in place on nn::cpu_backend()), the
// cache [seq_len, d] of keys and of values per layer. A step uploads its token id (one int) and
// downloads the logits [V] for the sampler on the host; the router state (cutoffs) and the hash
// router's token id stay on the host, as MoeLayer takes them.
// Precision: the dense ops of a step run in fp32 whatever the model's precision (the projections,
// the attention over the cache, the tied output); the FFNs in the model's precision (a bf16
// model's expert GEMMs take bf16 operands), as MoeLayer runs them.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/transformer.h"
#include "moe/moe_backend.h"
#include "nn/backend.h"
#include "nn/buffer.h"

namespace ecmoe {

class KvDecoder {
 public:
  using MoeBackendFactory = std::function<std::unique_ptr<MoeBackend>()>;

  // On the CPU. The model and its parameter and router-state buffers must outlive the decoder
  // (the parameters are read in place).
  KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state);
  // On `backend` (which must outlive the decoder), each layer's FFN on a MoeBackend from
  // `make_moe` (empty: MoE layers on the host, which read host pointers, so only with a backend
  // whose memory is the host's). The parameters are copied into the backend's memory here
  // (nn::cpu_backend() reads them in place: they must outlive the decoder then); the router state
  // stays on the host and must outlive the decoder.
  KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state,
            nn::Backend& backend, const MoeBackendFactory& make_moe);

  // Appends `token` at position position() and returns the logits [V] of the next token.
  const std::vector<float>& step(int32_t token);
  int position() const { return position_; }
  void reset() { position_ = 0; }
  const char* device() const { return be_->name(); }  // "cpu", "cuda"
  // Routing of the last step, per layer (dense layers included): plan and scores of its token.
  const MoeLayer& ffn_layer(int layer) const { return ffn_.at(layer); }

 private:
  const ModelConfig& config_;
  nn::Backend* be_;
  nn::Buffer<float> params_copy_;  // the parameters in the backend's memory (not on the CPU's)
  const float* params_ = nullptr;  // in the backend's memory
  std::vector<Transformer::LayerOffsets> layers_;  // the model's offsets in the parameters
  Transformer::Offsets offsets_;
  std::vector<const float*> cutoffs_;  // per layer [e] on the host (expert_threshold), or nullptr
  std::vector<MoeLayer> ffn_;
  std::vector<nn::Buffer<float>> keys_, values_;  // per layer [seq_len, d]
  int position_ = 0;
  // One row's temporaries, in the backend's memory: the token id, h [d], ln [d], qkv [3d],
  // att [d], tmp [d], mean and rstd [1], logits [V].
  nn::Buffer<int> token_;
  nn::Buffer<float> h_, ln_, qkv_, att_, tmp_, mean_, rstd_, logits_on_backend_;
  std::vector<float> logits_;  // [V] on the host
};

}  // namespace ecmoe
