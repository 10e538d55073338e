// q, out are [d]; keys, values are [length, d]; per head h the columns h·hd..(h+1)·hd
#include "nn/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace ecmoe::nn {

void check_attention_decode_config(const AttentionDecodeConfig& cfg) {
  ECMOE_CHECK(cfg.length > 0 && cfg.n_heads > 0 && cfg.head_dim > 0,
              "decode attention sizes must be positive (length ", cfg.length, ", heads ",
              cfg.n_heads, ", head_dim ", cfg.head_dim, ")");
}

void attention_decode(float* out, const float* q, const float* keys, const float* values,
                      const AttentionDecodeConfig& cfg) {
  check_attention_decode_config(cfg);
  const int len = cfg.length, hd = cfg.head_dim;
  const int64_t d = cfg.model_dim();
  const float scale = 1.f / std::sqrt(float(hd));
  std::vector<float> scores(static_cast<std::size_t>(len));
  for (int h = 0; h < cfg.n_heads; ++h) {
    const float* qh = q + h * hd;
    float top = -INFINITY;
    for (int j = 0; j < len; ++j) {
      const float* k = keys + j * d + h * hd;
      float s = 0.f;
      for (int i = 0; i < hd; ++i) s += qh[i] * k[i];
      scores[j] = s * scale;
      top = std::max(top, scores[j]);
    }
    float sum = 0.f;
    for (int j = 0; j < len; ++j) sum += (scores[j] = std::exp(scores[j] - top));
    float* o = out + h * hd;
    std::fill(o, o + hd, 0.f);
    for (int j = 0; j < len; ++j) {
      const float a = scores[j] / sum;
      const float* v = values + j * d + h * hd;
      for (int i = 0; i < hd; ++i) o[i] += a * v[i];
    }
  }
}

}  // namespace ecmoe::nn
