#pragma once

#include "nn/embedding.h"

namespace ecmoe::nn {

// Slow, obvious double-precision versions of nn/embedding.h for tests.
void embedding_forward_reference(double* out, const int* tokens, const double* token_table,
                                 const double* pos_table, const EmbeddingConfig& cfg);
void embedding_backward_reference(double* dtoken_table, double* dpos_table, const double* dout,
                                  const int* tokens, const EmbeddingConfig& cfg);

}  // namespace ecmoe::nn
