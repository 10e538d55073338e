// tokens is [B, T], token_table is [V, C], pos_table is [T, C], out is [B, T, C]
#include "nn/embedding.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "nn/reduce.h"

namespace ecmoe::nn {

void check_embedding_tokens(const int* tokens, const EmbeddingConfig& cfg) {
  const int64_t n = int64_t(cfg.batch) * cfg.seq_len;
  for (int64_t i = 0; i < n; ++i)
    ECMOE_CHECK(tokens[i] >= 0 && tokens[i] < cfg.vocab_size, "embedding: token id ", tokens[i],
                " at position ", i, " is outside the vocabulary [0, ", cfg.vocab_size, ")");
}

void embedding_forward(float* out, const int* tokens, const float* token_table,
                       const float* pos_table, const EmbeddingConfig& cfg) {
  check_embedding_tokens(tokens, cfg);
  const int rows = cfg.batch * cfg.seq_len, C = cfg.dim;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const float* tok = token_table + int64_t(tokens[r]) * C;
    float* o = out + int64_t(r) * C;
    if (pos_table) {
      const float* pos = pos_table + int64_t(r % cfg.seq_len) * C;
      for (int c = 0; c < C; ++c) o[c] = tok[c] + pos[c];
    } else {
      std::copy(tok, tok + C, o);
    }
  }
}

void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                        const int* tokens, const EmbeddingConfig& cfg) {
  check_embedding_tokens(tokens, cfg);
  const int rows = cfg.batch * cfg.seq_len, C = cfg.dim;
  const int blocks = detail::column_blocks(C);
  // Column blocks write disjoint parts of both tables; within a block the positions are added in
  // order, exactly as the serial reference does, so the result is bitwise the serial one.
#pragma omp parallel for schedule(static)
  for (int b = 0; b < blocks; ++b) {
    const int c0 = b * detail::kColumnBlock;
    const int c1 = std::min(C, c0 + detail::kColumnBlock);
    for (int r = 0; r < rows; ++r) {
      const float* g = dout + int64_t(r) * C;
      float* tok = dtoken_table + int64_t(tokens[r]) * C;
      for (int c = c0; c < c1; ++c) tok[c] += g[c];
      if (dpos_table) {
        float* pos = dpos_table + int64_t(r % cfg.seq_len) * C;
        for (int c = c0; c < c1; ++c) pos[c] += g[c];
      }
    }
  }
}

}  // namespace ecmoe::nn
