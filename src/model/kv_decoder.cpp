// One token: h [1, d], qkv [1, 3d]; the cache holds keys and values [positions, d] per layer.
#include "model/kv_decoder.h"

#include <cstddef>
#include <string>

#include "core/error.h"
#include "core/gemm.h"
#include "nn/attention_decode.h"

namespace ecmoe {

static_assert(sizeof(int) == sizeof(int32_t), "the token id is passed to the backend as int");

KvDecoder::KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state)
    : KvDecoder(model, params, state, nn::cpu_backend(), {}) {}

KvDecoder::KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state,
                     nn::Backend& backend, const MoeBackendFactory& make_moe)
    : config_(model.config()), be_(&backend) {
  ECMOE_CHECK(config_.kind == ModelKind::kDecoder,
              "incremental decoding needs a decoder model, not an encoder");
  ECMOE_CHECK(params.size() == model.table().total_floats() &&
                  state.size() == model.state_table().total_floats(),
              "incremental decoding: buffers do not belong to this model");
  const RouterKind router = config_.moe.router;
  ECMOE_CHECK(router != RouterKind::kExpertChoice && router != RouterKind::kExpertChoiceCapped,
              "cannot decode token by token with ", router_name(router),
              ": each expert's choice needs the whole routing group, the future included; use "
              "its thresholds (router expert_threshold)");
  offsets_ = model.offsets();
  const int d = config_.d_model;
  for (int l = 0; l < config_.n_layers; ++l) {
    MoeConfig ffn = config_.ffn_config(l);
    ffn.group_size = 1;  // token choice: each token is its own group
    layers_.push_back(model.layer_offsets(l));
    const std::string cutoff = Transformer::layer_prefix(l) + "ffn.router.cutoff";
    cutoffs_.push_back(state.table().contains(cutoff) ? state.get(cutoff) : nullptr);
    ffn_.emplace_back(ffn);
    if (make_moe) {
      ffn_.back().set_backend(make_moe());
      ffn_.back().backend()->set_collect_stats(false);  // a step reads none: no copies for them
    }
    keys_.emplace_back();
    keys_.back().resize(backend, int64_t(config_.seq_len) * d);
    values_.emplace_back();
    values_.back().resize(backend, int64_t(config_.seq_len) * d);
  }
  if (&backend == &nn::cpu_backend()) {  // its memory is the host's
    params_ = params.data();
  } else {
    params_copy_.resize(backend, int64_t(params.size()));
    backend.upload(params_copy_.data(), params.data(), params.size() * sizeof(float));
    params_ = params_copy_.data();
  }
  token_.resize(backend, 1);
  h_.resize(backend, d);
  ln_.resize(backend, d);
  qkv_.resize(backend, 3 * d);
  att_.resize(backend, d);
  tmp_.resize(backend, d);
  mean_.resize(backend, 1);
  rstd_.resize(backend, 1);
  logits_on_backend_.resize(backend, config_.vocab_size);
  logits_.resize(config_.vocab_size);
}

const std::vector<float>& KvDecoder::step(int32_t token) {
  const int d = config_.d_model, V = config_.vocab_size, pos = position_;
  ECMOE_CHECK(pos < config_.seq_len, "incremental decoding: position ", pos,
              " is past the model's sequence length ", config_.seq_len);
  ECMOE_CHECK(token >= 0 && token < V, "incremental decoding: token ", token, " is outside [0, ", V,
              ")");
  // One token's 1-row GEMMs on the CPU run as they are, not padded to a whole row tile.
  const GemmRowsAsGiven one_row;
  nn::Backend& be = *be_;
  const float* p = params_;
  // h = embed.tokens[token] + embed.positions[pos]: one row whose position table starts at pos
  be.upload(token_.data(), &token, sizeof(int));
  be.embedding_forward(h_.data(), token_.data(), p + offsets_.embed_tokens,
                       p + offsets_.embed_positions + int64_t(pos) * d, {1, 1, d, V});
  const nn::AttentionDecodeConfig attn{pos + 1, config_.n_heads, config_.head_dim()};
  const std::size_t row_bytes = std::size_t(d) * sizeof(float);
  for (int l = 0; l < config_.n_layers; ++l) {
    const Transformer::LayerOffsets& o = layers_[l];
    // h += attn(ln1(h)) with this position's key and value appended to the cache
    be.layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(), p + o.ln1_gain,
                         p + o.ln1_bias, 1, d);
    be.linear_forward(qkv_.data(), /*saved=*/nullptr, ln_.data(), p + o.qkv_w, p + o.qkv_b,
                      {1, d, 3 * d}, Precision::kFp32);
    be.copy(keys_[l].data() + int64_t(pos) * d, qkv_.data() + d, row_bytes);
    be.copy(values_[l].data() + int64_t(pos) * d, qkv_.data() + 2 * d, row_bytes);
    be.attention_decode(att_.data(), qkv_.data(), keys_[l].data(), values_[l].data(), attn);
    be.linear_forward(tmp_.data(), /*saved=*/nullptr, att_.data(), p + o.out_w, p + o.out_b,
                      {1, d, d}, Precision::kFp32);
    be.add_inplace(h_.data(), tmp_.data(), d);
    // h += ffn(ln2(h)), the token routed on its own
    be.layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(), p + o.ln2_gain,
                         p + o.ln2_bias, 1, d);
    const MoeWeights mw{o.router >= 0 ? p + o.router : nullptr, p + o.w1, p + o.w2};
    const MoeInput in{ln_.data(), &token, 1, /*training=*/false, 0, cutoffs_[l]};
    ffn_[l].forward_async(mw, in, tmp_.data());  // its losses and statistics: not wanted
    be.add_inplace(h_.data(), tmp_.data(), d);
  }
  be.layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(), p + offsets_.final_gain,
                       p + offsets_.final_bias, 1, d);
  be.tied_output_forward(logits_on_backend_.data(), ln_.data(), p + offsets_.embed_tokens,
                         {1, d, V}, Precision::kFp32);
  be.download(logits_.data(), logits_on_backend_.data(), std::size_t(V) * sizeof(float));
  ++position_;
  return logits_;
}

}  // namespace ecmoe
