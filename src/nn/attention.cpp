// qkv is [B, T, 3·d], out is [B, T, d], probs is [B, H, T, T]
#include "nn/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/vecmath.h"
#include "nn/reduce.h"

namespace ecmoe::nn {
namespace {

// Causal attention works on blocks of this many queries, each against only the keys it can see
// (0..last query of the block), which skips part of the masked upper triangle (3/8 of it at
// T = 512; none at T <= 128, one block). Fewer, larger GEMMs pay more than the products skipped:
// `ecmoe bench attention --causal --batch 4096/T` (4 heads of 64, fp32, 2 cores, 2026-12-03)
// took 18.1 ms at T = 128 and 42.9 ms at T = 512 with blocks of 32, 8.4 and 17.2 ms with 128,
// 19.0 ms at 512 with 256. A constant, so the arithmetic never depends on threads.
constexpr int kCausalQueryBlock = 128;

// Where one (batch, head) pair's data lives: row-major views with their leading dimensions.
struct HeadView {
  int kv_len;            // keys visible at all (key padding)
  int64_t qkv_offset;    // of this head's q in qkv (k at + d, v at + 2·d), leading dim 3·d
  int64_t out_offset;    // of this head's output in out, leading dim d
  int64_t probs_offset;  // of this pair's [T, T] probabilities
};

HeadView head_view(const AttentionConfig& cfg, const int* valid_len, int pair) {
  const int b = pair / cfg.n_heads, h = pair % cfg.n_heads;
  const int64_t T = cfg.seq_len, d = cfg.model_dim();
  return {valid_len ? valid_len[b] : cfg.seq_len, b * T * 3 * d + h * cfg.head_dim,
          b * T * d + h * cfg.head_dim, int64_t(pair) * T * T};
}

// Keys that query i may attend to: [0, visible_keys).
int visible_keys(const AttentionConfig& cfg, int kv_len, int query) {
  return cfg.causal ? std::min(query + 1, kv_len) : kv_len;
}

int query_block(const AttentionConfig& cfg) { return cfg.causal ? kCausalQueryBlock : cfg.seq_len; }

}  // namespace

void check_attention_config(const AttentionConfig& cfg, const int* valid_len) {
  ECMOE_CHECK(cfg.batch > 0 && cfg.seq_len > 0 && cfg.n_heads > 0 && cfg.head_dim > 0,
              "attention sizes must be positive (batch ", cfg.batch, ", seq_len ", cfg.seq_len,
              ", heads ", cfg.n_heads, ", head_dim ", cfg.head_dim, ")");
  if (valid_len)
    for (int b = 0; b < cfg.batch; ++b)
      ECMOE_CHECK(valid_len[b] >= 1 && valid_len[b] <= cfg.seq_len, "attention: valid length ",
                  valid_len[b], " of sequence ", b, " is outside [1, ", cfg.seq_len, "]");
}

void attention_forward(float* out, float* probs, const float* qkv, const AttentionConfig& cfg,
                       const int* valid_len) {
  check_attention_config(cfg, valid_len);
  const int T = cfg.seq_len, d = cfg.model_dim(), hd = cfg.head_dim;
  const float scale = 1.f / std::sqrt(float(hd));
  const int pairs = cfg.batch * cfg.n_heads;
  // One (batch, head) pair per iteration, all of it on one thread: gemm sees omp_in_parallel and
  // runs serially, so each pair is a fixed sequence of operations whoever runs it.
#pragma omp parallel for schedule(dynamic, 1)
  for (int pair = 0; pair < pairs; ++pair) {
    const HeadView view = head_view(cfg, valid_len, pair);
    const float* q = qkv + view.qkv_offset;
    const float* k = q + d;
    const float* val = q + 2 * d;
    float* p = probs + view.probs_offset;
    for (int r0 = 0; r0 < T; r0 += query_block(cfg)) {
      const int r1 = std::min(T, r0 + query_block(cfg));
      const int key_end = visible_keys(cfg, view.kv_len, r1 - 1);
      // scores[r0:r1, 0:key_end] = scale · Q[r0:r1] · K[0:key_end]ᵀ, written into probs
      gemm({.trans_b = true,
            .m = r1 - r0,
            .n = key_end,
            .k = hd,
            .alpha = scale,
            .a = q + int64_t(r0) * 3 * d,
            .lda = 3 * d,
            .b = k,
            .ldb = 3 * d,
            .beta = 0.f,
            .c = p + int64_t(r0) * T,
            .ldc = T,
            .precision = cfg.precision});
      for (int i = r0; i < r1; ++i) {  // softmax in place, fp32, max subtracted
        float* row = p + int64_t(i) * T;
        const int n = visible_keys(cfg, view.kv_len, i);
        const float row_max = detail::max(row, n);
        for (int j = 0; j < n; ++j) row[j] -= row_max;
        vec_exp(row, row, n);
        const float inv_sum = 1.f / detail::sum(row, n);
        for (int j = 0; j < n; ++j) row[j] *= inv_sum;
        std::fill(row + n, row + T, 0.f);
      }
      // out[r0:r1] = P[r0:r1, 0:key_end] · V[0:key_end]
      gemm({.m = r1 - r0,
            .n = hd,
            .k = key_end,
            .a = p + int64_t(r0) * T,
            .lda = T,
            .b = val,
            .ldb = 3 * d,
            .beta = 0.f,
            .c = out + view.out_offset + int64_t(r0) * d,
            .ldc = d,
            .precision = cfg.precision});
    }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs,
                        const AttentionConfig& cfg, const int* valid_len) {
  check_attention_config(cfg, valid_len);
  const int T = cfg.seq_len, d = cfg.model_dim(), hd = cfg.head_dim;
  const float scale = 1.f / std::sqrt(float(hd));
  const int pairs = cfg.batch * cfg.n_heads;
  // As in the forward pass, one pair per iteration on one thread; pairs write disjoint parts of
  // dqkv (their own batch rows and head columns), so nothing is reduced across threads.
#pragma omp parallel
  {
    std::vector<float> dscores(int64_t(query_block(cfg)) * T);  // this thread's scratch
#pragma omp for schedule(dynamic, 1)
    for (int pair = 0; pair < pairs; ++pair) {
      const HeadView view = head_view(cfg, valid_len, pair);
      const float* q = qkv + view.qkv_offset;
      const float* k = q + d;
      const float* val = q + 2 * d;
      float* dq = dqkv + view.qkv_offset;
      float* dk = dq + d;
      float* dv = dq + 2 * d;
      const float* p = probs + view.probs_offset;
      const float* dy = dout + view.out_offset;
      for (int r0 = 0; r0 < T; r0 += query_block(cfg)) {
        const int r1 = std::min(T, r0 + query_block(cfg)), rows = r1 - r0;
        const int key_end = visible_keys(cfg, view.kv_len, r1 - 1);
        const float* p_blk = p + int64_t(r0) * T;
        const float* q_blk = q + int64_t(r0) * 3 * d;
        const float* dy_blk = dy + int64_t(r0) * d;
        // dV[0:key_end] += Pᵀ · dO
        gemm({.trans_a = true,
              .m = key_end,
              .n = hd,
              .k = rows,
              .a = p_blk,
              .lda = T,
              .b = dy_blk,
              .ldb = d,
              .beta = 1.f,
              .c = dv,
              .ldc = 3 * d,
              .precision = cfg.precision});
        // dP = dO · V[0:key_end]ᵀ
        gemm({.trans_b = true,
              .m = rows,
              .n = key_end,
              .k = hd,
              .a = dy_blk,
              .lda = d,
              .b = val,
              .ldb = 3 * d,
              .beta = 0.f,
              .c = dscores.data(),
              .ldc = T,
              .precision = cfg.precision});
        // Softmax backward in place: dS = P ⊙ (dP − Σ_j P·dP); the 1/sqrt(hd) goes into alpha.
        for (int i = 0; i < rows; ++i) {
          const float* prow = p_blk + int64_t(i) * T;
          float* drow = dscores.data() + int64_t(i) * T;
          const int n = visible_keys(cfg, view.kv_len, r0 + i);
          const float row_dot = detail::dot(prow, drow, n);
          for (int j = 0; j < n; ++j) drow[j] = prow[j] * (drow[j] - row_dot);
          std::fill(drow + n, drow + key_end, 0.f);
        }
        // dQ[r0:r1] += scale · dS · K[0:key_end]
        gemm({.m = rows,
              .n = hd,
              .k = key_end,
              .alpha = scale,
              .a = dscores.data(),
              .lda = T,
              .b = k,
              .ldb = 3 * d,
              .beta = 1.f,
              .c = dq + int64_t(r0) * 3 * d,
              .ldc = 3 * d,
              .precision = cfg.precision});
        // dK[0:key_end] += scale · dSᵀ · Q[r0:r1]
        gemm({.trans_a = true,
              .m = key_end,
              .n = hd,
              .k = rows,
              .alpha = scale,
              .a = dscores.data(),
              .lda = T,
              .b = q_blk,
              .ldb = 3 * d,
              .beta = 1.f,
              .c = dk,
              .ldc = 3 * d,
              .precision = cfg.precision});
      }
    }
  }
}

}  // namespace ecmoe::nn
