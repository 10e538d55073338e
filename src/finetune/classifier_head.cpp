// hidden [B·T, d] -> pooled [B, d] -> logits [B, C] -> mean cross-entropy
#include "finetune/classifier_head.h"

#include <algorithm>
#include <cstddef>
#include <span>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cross_entropy.h"
#include "nn/linear.h"

namespace ecmoe::finetune {

Pooling parse_pooling(const std::string& name) {
  if (name == "first") return Pooling::kFirst;
  if (name == "mean") return Pooling::kMean;
  fail("unknown pooling '", name, "' (expected first or mean)");
}

std::string pooling_name(Pooling pooling) { return pooling == Pooling::kMean ? "mean" : "first"; }

TensorTable head_table(int dim, int classes) {
  TensorTable table;
  table.add("head.weight", {dim, classes});
  table.add("head.bias", {classes});
  return table;
}

void init_head(FlatBuffer& params, float std, uint64_t seed) {
  const std::span<float> w = params.view("head.weight");
  const Rng rng(seed, 0);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std * rng.normal(uint64_t(i));
  const std::span<float> b = params.view("head.bias");
  std::fill(b.begin(), b.end(), 0.f);
}

int pooled_length(Pooling pooling, const int32_t* valid_len, int b, int seq_len) {
  const int len = valid_len ? valid_len[b] : seq_len;
  ECMOE_CHECK(len >= 1 && len <= seq_len, "classifier head: valid length ", len, " of sequence ", b,
              " is outside [1, ", seq_len, "]");
  return pooling == Pooling::kMean ? len : 1;
}

double head_forward(HeadState& s, const float* hidden, const int32_t* valid_len,
                    const int32_t* labels, const float* weight, const float* bias, Pooling pooling,
                    const HeadShape& shape) {
  const int B = shape.batch, T = shape.seq_len, d = shape.dim, C = shape.classes;
  s.pooled.assign(int64_t(B) * d, 0.f);
  s.logits.resize(int64_t(B) * C);
  s.logsumexp.resize(B);
  s.lengths.resize(B);
  s.labels.assign(B, nn::kIgnoreIndex);
  for (int b = 0; b < B; ++b) {
    s.lengths[b] = pooled_length(pooling, valid_len, b, T);
    float* out = s.pooled.data() + int64_t(b) * d;
    const float scale = 1.f / float(s.lengths[b]);
    for (int t = 0; t < s.lengths[b]; ++t) {
      const float* h = hidden + (int64_t(b) * T + t) * d;
      for (int i = 0; i < d; ++i) out[i] += h[i];
    }
    for (int i = 0; i < d; ++i) out[i] *= scale;
    if (labels) {
      ECMOE_CHECK(labels[b] >= 0 && labels[b] < C, "classifier head: label ", labels[b],
                  " is outside [0, ", C, ")");
      s.labels[b] = labels[b];
    }
  }
  nn::linear_forward(s.logits.data(), s.pooled.data(), weight, bias, {B, d, C});
  const nn::CrossEntropyResult ce =
      nn::cross_entropy_forward(s.logsumexp.data(), s.logits.data(), s.labels.data(), B, C);
  s.ready = labels != nullptr;
  return ce.loss;
}

void head_backward(float* d_hidden, float* dweight, float* dbias, HeadState& s, const float* weight,
                   const HeadShape& shape) {
  ECMOE_CHECK(s.ready, "classifier head backward: needs a forward with labels first");
  s.ready = false;
  const int B = shape.batch, T = shape.seq_len, d = shape.dim, C = shape.classes;
  // In place: logits become dlogits.
  nn::cross_entropy_backward(s.logits.data(), s.logits.data(), s.logsumexp.data(), s.labels.data(),
                             B, 1.f, B, C);
  std::vector<float> d_pooled(int64_t(B) * d, 0.f);
  nn::linear_backward(d_pooled.data(), dweight, dbias, s.logits.data(), s.pooled.data(), weight,
                      {B, d, C});
  for (int b = 0; b < B; ++b) {
    const float scale = 1.f / float(s.lengths[b]);
    const float* g = d_pooled.data() + int64_t(b) * d;
    for (int t = 0; t < s.lengths[b]; ++t) {
      float* dh = d_hidden + (int64_t(b) * T + t) * d;
      for (int i = 0; i < d; ++i) dh[i] += g[i] * scale;
    }
  }
}

int head_prediction(const HeadState& s, int b, int classes) {
  const float* row = s.logits.data() + int64_t(b) * classes;
  return int(std::max_element(row, row + classes) - row);
}

}  // namespace ecmoe::finetune
