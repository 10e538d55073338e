// One token: h [1, d], qkv [1, 3d]; the cache holds keys and values [positions, d] per layer.
#include "model/kv_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "nn/residual.h"
#include "nn/tied_output.h"

namespace ecmoe {

KvDecoder::KvDecoder(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state)
    : config_(model.config()), params_(params), state_(state) {
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
  const int d = config_.d_model;
  for (int l = 0; l < config_.n_layers; ++l) {
    MoeConfig ffn = config_.ffn_config(l);
    ffn.group_size = 1;  // token choice: each token is its own group
    ffn_.emplace_back(ffn);
    keys_.emplace_back(int64_t(config_.seq_len) * d);
    values_.emplace_back(int64_t(config_.seq_len) * d);
  }
  h_.resize(d);
  ln_.resize(d);
  qkv_.resize(3 * d);
  att_.resize(d);
  tmp_.resize(d);
  mean_.resize(1);
  rstd_.resize(1);
  logits_.resize(config_.vocab_size);
}

const std::vector<float>& KvDecoder::step(int32_t token) {
  const int d = config_.d_model, V = config_.vocab_size, p = position_;
  const int heads = config_.n_heads, hd = config_.head_dim();
  ECMOE_CHECK(p < config_.seq_len, "incremental decoding: position ", p,
              " is past the model's sequence length ", config_.seq_len);
  ECMOE_CHECK(token >= 0 && token < V, "incremental decoding: token ", token, " is outside [0, ", V,
              ")");
  const float* tok = params_.get("embed.tokens") + int64_t(token) * d;
  const float* pos = params_.get("embed.positions") + int64_t(p) * d;
  for (int i = 0; i < d; ++i) h_[i] = tok[i] + pos[i];
  const float scale = 1.f / std::sqrt(float(hd));
  scores_.resize(p + 1);
  for (int l = 0; l < config_.n_layers; ++l) {
    const std::string pre = Transformer::layer_prefix(l);
    auto w = [&](const char* name) { return params_.get(pre + name); };
    // h += attn(ln1(h)) with this position's key and value appended to the cache
    nn::layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(), w("ln1.gain"),
                          w("ln1.bias"), 1, d);
    nn::linear_forward(qkv_.data(), ln_.data(), w("attn.qkv.weight"), w("attn.qkv.bias"),
                       {1, d, 3 * d});
    std::memcpy(keys_[l].data() + int64_t(p) * d, qkv_.data() + d, d * sizeof(float));
    std::memcpy(values_[l].data() + int64_t(p) * d, qkv_.data() + 2 * d, d * sizeof(float));
    for (int h = 0; h < heads; ++h) {
      const float* q = qkv_.data() + h * hd;
      float top = -INFINITY;
      for (int j = 0; j <= p; ++j) {
        const float* k = keys_[l].data() + int64_t(j) * d + h * hd;
        float s = 0.f;
        for (int i = 0; i < hd; ++i) s += q[i] * k[i];
        scores_[j] = s * scale;
        top = std::max(top, scores_[j]);
      }
      float sum = 0.f;
      for (int j = 0; j <= p; ++j) sum += (scores_[j] = std::exp(scores_[j] - top));
      float* out = att_.data() + h * hd;
      std::fill(out, out + hd, 0.f);
      for (int j = 0; j <= p; ++j) {
        const float a = scores_[j] / sum;
        const float* v = values_[l].data() + int64_t(j) * d + h * hd;
        for (int i = 0; i < hd; ++i) out[i] += a * v[i];
      }
    }
    nn::linear_forward(tmp_.data(), att_.data(), w("attn.out.weight"), w("attn.out.bias"),
                       {1, d, d});
    nn::add_inplace(h_.data(), tmp_.data(), d);
    // h += ffn(ln2(h)), the token routed on its own
    nn::layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(), w("ln2.gain"),
                          w("ln2.bias"), 1, d);
    const MoeConfig& fc = ffn_[l].config();
    const std::string cutoff = pre + "ffn.router.cutoff";
    const MoeWeights mw{router_has_weights(fc.router) ? w("ffn.router.weight") : nullptr,
                        w("ffn.experts.w1"), w("ffn.experts.w2")};
    const MoeInput in{ln_.data(), &token,
                      1,          /*training=*/false,
                      0,          state_.table().contains(cutoff) ? state_.get(cutoff) : nullptr};
    ffn_[l].forward(mw, in, tmp_.data());
    nn::add_inplace(h_.data(), tmp_.data(), d);
  }
  nn::layernorm_forward(ln_.data(), mean_.data(), rstd_.data(), h_.data(),
                        params_.get("final_ln.gain"), params_.get("final_ln.bias"), 1, d);
  nn::tied_output_forward(logits_.data(), ln_.data(), params_.get("embed.tokens"), {1, d, V});
  ++position_;
  return logits_;
}

}  // namespace ecmoe
