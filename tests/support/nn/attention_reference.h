#pragma once

#include "nn/attention.h"

namespace ecmoe::nn {

// Slow, obvious double-precision versions of nn/attention.h for tests (probs are recomputed, not
// saved).
void attention_forward_reference(double* out, const double* qkv, const AttentionConfig& cfg,
                                 const int* valid_len = nullptr);
void attention_backward_reference(double* dqkv, const double* dout, const double* qkv,
                                  const AttentionConfig& cfg, const int* valid_len = nullptr);

}  // namespace ecmoe::nn
