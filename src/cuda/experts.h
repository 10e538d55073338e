// The experts over a routing plan on the GPU, forward and backward: moe/expert_ffn.h's steps with
// the same buffers and the same precision rules (bf16: the GEMM operands x_in, hidden, the
// weights, d_out and d_pre are kept in bf16 only; pre, out and every gradient of a weight stay
// fp32). GELU is a separate pass (cuBLAS's GELU epilogues are the tanh approximation, not the
// exact erf GELU the CPU computes). Shapes: x, y [n, d]; w1 [e, d, f]; w2 [e, f, d]; slots S.
#pragma once
#include <cstdint>

#include "core/phase_times.h"
#include "core/precision.h"
#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "cuda/device_plan.h"
#include "cuda/gemm_bias.h"
#include "nn/grad_write.h"

namespace ecmoe::cuda {

struct DeviceExpertActivations {
  DeviceVec<float> x_in;         // [S, d] fp32 only
  DeviceVec<float> pre;          // [S, f]
  DeviceVec<float> hidden;       // [S, f] fp32 only
  DeviceVec<float> out;          // [S, d]
  DeviceVec<uint16_t> x_in16;    // [S, d] bf16 only
  DeviceVec<uint16_t> hidden16;  // [S, f] bf16 only
  DeviceVec<uint16_t> w1_16;     // [e, d, f] bf16 only: this forward's copy of W1, when made
  DeviceVec<uint16_t> w2_16;     // [e, f, d]
  // bf16 only: the W1, W2 of this forward, w1_16 and w2_16 or the training parameters' bf16
  // copy (Context::params_bf16) where it holds them.
  const uint16_t* w1_bf16 = nullptr;
  const uint16_t* w2_bf16 = nullptr;
  Precision precision = Precision::kFp32;
  // bf16, a dense layer (identity plan) with a residual: its second GEMM with the residual added
  // in cuBLASLt's epilogue (cuda/gemm_bias.h)
  GemmBias residual_gemm;
};

struct DeviceExpertScratch {
  DeviceVec<float> grad_d;       // [S, d] d_out (fp32), then d_x_in
  DeviceVec<float> grad_f;       // [S, f] d_hidden (then d_pre in place, fp32)
  DeviceVec<uint16_t> grad_d16;  // [S, d] bf16 d_out
  DeviceVec<uint16_t> grad_f16;  // [S, f] bf16 d_pre
};

// x [n, d] -> y [n, d] (overwritten); tokens with no slot get 0. act.out is not kept for an
// identity plan. residual [n, d] (optional) is added to y: by the combine after its sum, or by an
// identity plan's second GEMM (in bf16 in its epilogue: product + residual, one rounding, the
// bits of adding it afterwards where cuBLASLt sums as cuBLAS; else after it).
// times (optional): each phase's time is added to it, the device synchronised at each phase's
// end (the CPU's phase names: dispatch, each GEMM, GELU, combine and their adjoints).
void experts_forward(float* y, DeviceExpertActivations& act, const DevicePlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f, Precision precision,
                     const Context& ctx, PhaseTimes* times = nullptr,
                     const float* residual = nullptr);
// dy [n, d] -> dx [n, d] (+=), dw1 [e, d, f] (+=), dw2 [e, f, d] (+=), dgate [S] (overwritten;
// not written for constant gates, which have no gradient). A plan.identity plan (a dense layer)
// skips the combine's and dispatch's copies: y and dx are the GEMMs' own outputs.
// dx_write kOverwrite: dx written (every token's row: zeros where a token has no slot), not read.
void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, DeviceExpertScratch& scratch,
                      const float* dy, const DeviceExpertActivations& act, const DevicePlan& plan,
                      const float* w1, const float* w2, int d, int f, const Context& ctx,
                      PhaseTimes* times = nullptr, nn::GradWrite dx_write = nn::GradWrite::kAdd);

}  // namespace ecmoe::cuda
