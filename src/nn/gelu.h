// Exact (erf) GELU: gelu(a) = a · Phi(a), Phi the standard normal CDF. Forward keeps Phi(a), so
// backward needs only one exponential per element (for the density) instead of erf again.
#pragma once
#include <cstdint>

namespace ecmoe::nn {

// a [n] -> out [n] = gelu(a), cdf [n] = Phi(a)
void gelu_forward(float* out, float* cdf, const float* a, int64_t n);
// The same with out rounded to bf16 (nearest even, core/bf16.h) as it is written: the hidden
// activations of mixed precision, stored once in the form the next GEMM reads.
void gelu_forward(uint16_t* out, float* cdf, const float* a, int64_t n);
// dout, a, cdf [n] -> da [n] = dout · (Phi(a) + a · phi(a)), written (not accumulated); da may
// alias dout
void gelu_backward(float* da, const float* dout, const float* a, const float* cdf, int64_t n);
// The same with da rounded to bf16 as it is written (it feeds bf16 GEMMs only).
void gelu_backward(uint16_t* da, const float* dout, const float* a, const float* cdf, int64_t n);

}  // namespace ecmoe::nn
