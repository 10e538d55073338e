#include "support/nn/embedding_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ecmoe::nn {

void embedding_forward_reference(double* out, const int* tokens, const double* token_table,
                                 const double* pos_table, const EmbeddingConfig& cfg) {
  check_embedding_tokens(tokens, cfg);
  for (int b = 0; b < cfg.batch; ++b)
    for (int t = 0; t < cfg.seq_len; ++t)
      for (int c = 0; c < cfg.dim; ++c) {
        const int64_t r = int64_t(b) * cfg.seq_len + t;
        out[r * cfg.dim + c] = token_table[int64_t(tokens[r]) * cfg.dim + c] +
                               (pos_table ? pos_table[int64_t(t) * cfg.dim + c] : 0.0);
      }
}

void embedding_backward_reference(double* dtoken_table, double* dpos_table, const double* dout,
                                  const int* tokens, const EmbeddingConfig& cfg) {
  check_embedding_tokens(tokens, cfg);
  for (int b = 0; b < cfg.batch; ++b)
    for (int t = 0; t < cfg.seq_len; ++t)
      for (int c = 0; c < cfg.dim; ++c) {
        const int64_t r = int64_t(b) * cfg.seq_len + t;
        dtoken_table[int64_t(tokens[r]) * cfg.dim + c] += dout[r * cfg.dim + c];
        if (dpos_table) dpos_table[int64_t(t) * cfg.dim + c] += dout[r * cfg.dim + c];
      }
}

}  // namespace ecmoe::nn
