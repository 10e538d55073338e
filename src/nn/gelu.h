// Exact (erf) GELU: gelu(a) = a · Phi(a), Phi the standard normal CDF. The functions with a cdf
// argument keep Phi(a), so that backward needs only one exponential per element; the serial ones
// below keep nothing and recompute it (what the experts use: storing Phi cost more memory traffic
// than the erf it saves).
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

// On the calling thread alone (no parallel loop), for a block inside a parallel region (e.g. a
// GEMM's tile epilogue, core/gemm.h), without storing Phi: forward computes it in a local buffer,
// backward recomputes it from a (one erf per element instead of reading a stored cdf). Each
// element's result is the same bits as the functions above give it (the CDF is computed by the
// same code, and an element's result never depends on its position).
void gelu_forward_serial(float* out, const float* a, int64_t n);
void gelu_forward_serial(uint16_t* out, const float* a, int64_t n);
void gelu_backward_serial(float* da, const float* dout, const float* a, int64_t n);  // da may
                                                                                     // alias dout
void gelu_backward_serial(uint16_t* da, const float* dout, const float* a, int64_t n);

}  // namespace ecmoe::nn
