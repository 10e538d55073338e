#include "support/nn/attention_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ecmoe::nn {

void attention_forward_reference(double* out, const double* qkv, const AttentionConfig& cfg,
                                 const int* valid_len) {
  check_attention_config(cfg, valid_len);
  const int T = cfg.seq_len, d = cfg.model_dim(), hd = cfg.head_dim;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> w(T);
  for (int b = 0; b < cfg.batch; ++b)
    for (int h = 0; h < cfg.n_heads; ++h)
      for (int i = 0; i < T; ++i) {
        const double* q = qkv + (int64_t(b) * T + i) * 3 * d + h * hd;
        double row_max = -INFINITY;
        for (int j = 0; j < T; ++j) {
          const bool masked = (cfg.causal && j > i) || (valid_len && j >= valid_len[b]);
          const double* k = qkv + (int64_t(b) * T + j) * 3 * d + d + h * hd;
          double s = 0;
          for (int c = 0; c < hd; ++c) s += q[c] * k[c];
          w[j] = masked ? -INFINITY : s * scale;
          row_max = std::max(row_max, w[j]);
        }
        double total = 0;
        for (int j = 0; j < T; ++j) total += (w[j] = std::exp(w[j] - row_max));
        double* o = out + (int64_t(b) * T + i) * d + h * hd;
        for (int c = 0; c < hd; ++c) o[c] = 0;
        for (int j = 0; j < T; ++j) {
          const double* val = qkv + (int64_t(b) * T + j) * 3 * d + 2 * d + h * hd;
          for (int c = 0; c < hd; ++c) o[c] += w[j] / total * val[c];
        }
      }
}

void attention_backward_reference(double* dqkv, const double* dout, const double* qkv,
                                  const AttentionConfig& cfg, const int* valid_len) {
  check_attention_config(cfg, valid_len);
  const int T = cfg.seq_len, d = cfg.model_dim(), hd = cfg.head_dim;
  const double scale = 1.0 / std::sqrt(double(hd));
  auto at = [&](int b, int t, int part, int h) {
    return (int64_t(b) * T + t) * 3 * d + part * d + h * hd;
  };
  std::vector<double> p(T), dp(T);
  for (int b = 0; b < cfg.batch; ++b)
    for (int h = 0; h < cfg.n_heads; ++h)
      for (int i = 0; i < T; ++i) {
        // Recompute query i's probabilities.
        double row_max = -INFINITY;
        for (int j = 0; j < T; ++j) {
          const bool masked = (cfg.causal && j > i) || (valid_len && j >= valid_len[b]);
          double s = 0;
          for (int c = 0; c < hd; ++c) s += qkv[at(b, i, 0, h) + c] * qkv[at(b, j, 1, h) + c];
          p[j] = masked ? -INFINITY : s * scale;
          row_max = std::max(row_max, p[j]);
        }
        double total = 0;
        for (int j = 0; j < T; ++j) total += (p[j] = std::exp(p[j] - row_max));
        for (int j = 0; j < T; ++j) p[j] /= total;
        // out_i = Σ_j p_j v_j  →  dv_j += p_j do_i, dp_j = do_i · v_j
        const double* dy = dout + (int64_t(b) * T + i) * d + h * hd;
        double weighted = 0;
        for (int j = 0; j < T; ++j) {
          dp[j] = 0;
          for (int c = 0; c < hd; ++c) {
            dqkv[at(b, j, 2, h) + c] += p[j] * dy[c];
            dp[j] += dy[c] * qkv[at(b, j, 2, h) + c];
          }
          weighted += p[j] * dp[j];
        }
        // p = softmax(s)  →  ds_j = p_j (dp_j − Σ p dp); s_j = scale · q_i · k_j
        for (int j = 0; j < T; ++j) {
          const double ds = p[j] * (dp[j] - weighted) * scale;
          for (int c = 0; c < hd; ++c) {
            dqkv[at(b, i, 0, h) + c] += ds * qkv[at(b, j, 1, h) + c];
            dqkv[at(b, j, 1, h) + c] += ds * qkv[at(b, i, 0, h) + c];
          }
        }
      }
}

}  // namespace ecmoe::nn
