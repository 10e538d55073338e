// The MoE layer's elementwise and data-movement ops on the GPU, each forward beside its backward,
// each the counterpart of a CPU op named in its comment and tested against it
// (tests/cuda/test_cuda_ops.cpp). All run on `stream`; pointers are device pointers; bf16 arrays
// are uint16_t bit patterns rounded to nearest even, as core/bf16.h rounds. Sums over a token's
// slots run in the plan's inverse-index order and reductions in a fixed tree: no floating-point
// atomics, so every result is the same run to run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_plan.h"

namespace ecmoe::cuda {

// moe/dispatch_combine.h. x [n, d] -> x_slots [S, d] (fp32, or rounded to bf16).
void dispatch_forward(float* x_slots, const float* x, const DevicePlan& plan, int d,
                      cudaStream_t stream);
void dispatch_forward(uint16_t* x_slots16, const float* x, const DevicePlan& plan, int d,
                      cudaStream_t stream);
// d_slots [S, d] -> dx [n, d] (+=; overwrite: =, a token without slots gets zeros)
void dispatch_backward(float* dx, const float* d_slots, const DevicePlan& plan, int d,
                       cudaStream_t stream, bool overwrite = false);
// out [S, d] -> y [n, d] (overwritten) = Σ gate[s] · out[s] over t's slots, + residual[t] after
// the sum where residual [n, d] is given
void combine_forward(float* y, const float* out, const DevicePlan& plan, int d, cudaStream_t stream,
                     const float* residual = nullptr);
// dy [n, d] -> d_out [S, d] = gate[s] · dy[t] (fp32 or bf16), dgate [S] = <dy[t], out[s]>
// (dgate nullptr: not computed, out not read)
void combine_backward(float* d_out, float* dgate, const float* dy, const float* out,
                      const DevicePlan& plan, int d, cudaStream_t stream);
void combine_backward(uint16_t* d_out16, float* dgate, const float* dy, const float* out,
                      const DevicePlan& plan, int d, cudaStream_t stream);

// nn/gelu.h, exact (erf). a [n] -> out [n] = a · Phi(a) (fp32 or bf16)
void gelu_forward(float* out, const float* a, int64_t n, cudaStream_t stream);
void gelu_forward(uint16_t* out, const float* a, int64_t n, cudaStream_t stream);
// dout, a [n] -> da [n] = dout · (Phi(a) + a · phi(a)) (written; fp32 da may alias dout)
void gelu_backward(float* da, const float* dout, const float* a, int64_t n, cudaStream_t stream);
void gelu_backward(uint16_t* da, const float* dout, const float* a, int64_t n, cudaStream_t stream);

// moe/softmax_rows.h. logits [n, e] -> probs [n, e]; each row in the CPU's order (max, then the
// sum of exponentials left to right).
void softmax_rows_forward(float* probs, const float* logits, int n, int e, cudaStream_t stream);
// dlogits [n, e] += J^T · dprobs
void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e,
                           cudaStream_t stream);

// moe/gate_backward.h: dgate [S] -> dprobs [n, e] (+=) through the plan's gate definition
// (score: one element per slot, since an expert holds a token at most once; renormalised: one
// thread per token over its choices, in the CPU's order; constant: nothing).
void gate_backward(float* dprobs, const DevicePlan& plan, const float* probs, const float* dgate,
                   cudaStream_t stream);

// The router's jitter (moe/moe_layer.cpp): noise[j] = 1 + jitter·(2·U_j - 1) with U_j value
// first + j of core/rng.h's stream (seed, streams::kRouterJitter), the same draws as the CPU's;
// router_x = x · noise. [count] each.
void router_jitter(float* router_x, float* noise, const float* x, int64_t count, uint64_t seed,
                   uint64_t first, float jitter, cudaStream_t stream);
// dx [count] += g · noise (the router's input gradient through the jitter)
void add_product(float* dx, const float* g, const float* noise, int64_t count, cudaStream_t stream);

// core/bf16.h convert_to_bf16: in [n] -> out [n]
void to_bf16(uint16_t* out, const float* in, int64_t n, cudaStream_t stream);

}  // namespace ecmoe::cuda
