// Exact (erf) GELU: gelu(a) = a · Phi(a), Phi the standard normal CDF.
#pragma once
#include <cstdint>

namespace ecmoe {

// a [n] -> out [n]
void gelu_forward(float* out, const float* a, int64_t n);
// dout, a [n] -> da [n] = dout · (Phi(a) + a · phi(a)), written (not accumulated)
void gelu_backward(float* da, const float* dout, const float* a, int64_t n);

}  // namespace ecmoe
