// Residual connection: out = a + b (the pre-LayerNorm block's x + sublayer(ln(x))).
#pragma once
#include <cstdint>

namespace ecmoe::nn {

// out, a, b: [n]; out may alias a or b.
void residual_forward(float* out, const float* a, const float* b, int64_t n);
// Accumulates (+=) dout into da and db [n].
void residual_backward(float* da, float* db, const float* dout, int64_t n);
// acc += x over [n]: the accumulate step every backward pass ends with.
void add_inplace(float* acc, const float* x, int64_t n);

}  // namespace ecmoe::nn
