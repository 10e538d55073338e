// The experts over a routing plan: dispatch (gather), per-expert GELU FFNs as grouped GEMMs, and
// combine (gated sum over each token's slots in expert order); the backward pass is the adjoint of
// each step, over the same plan. Shapes: x, y [n, d]; w1 [e, d, f]; w2 [e, f, d]; slots S.
#pragma once
#include "core/aligned.h"
#include "core/bf16.h"
#include "core/phase_times.h"
#include "core/precision.h"
#include "moe/routing_plan.h"

namespace ecmoe {

// With Precision::kBf16 the GEMM operands are kept in bf16 only: x_in and hidden stay empty and
// their bf16 forms (x_in16, hidden16) are what the GEMMs read, forward and backward; the weights
// are converted once per forward (w1_16, w2_16) and reused by backward. pre and out stay fp32.
// GELU's CDF is not kept: backward recomputes it from pre (nn/gelu.h).
struct ExpertActivations {
  FloatVec x_in;     // [S, d] gathered inputs (fp32)
  FloatVec pre;      // [S, f] x_in · W1
  FloatVec hidden;   // [S, f] gelu(pre) (fp32)
  FloatVec out;      // [S, d] hidden · W2, before the gate
  Bf16Vec x_in16;    // [S, d] bf16: the gather rounds as it copies
  Bf16Vec hidden16;  // [S, f] bf16: GELU rounds as it writes
  Bf16Vec w1_16;     // [e, d, f] bf16 copy of W1 for this forward and its backward
  Bf16Vec w2_16;     // [e, f, d]
};

struct ExpertScratch {  // backward temporaries, kept to avoid reallocating every step
  FloatVec grad_d;      // [S, d] fp32: d_out then d_x_in; kBf16: d_x_in only
  FloatVec grad_f;      // [S, f] d_hidden (fp32: then d_pre, in place)
  Bf16Vec grad_d16;     // [S, d] kBf16: the output gradient, in bf16 only (two GEMMs read it)
  Bf16Vec grad_f16;     // [S, f] kBf16: the pre-activation gradient, in bf16 only
};

// x [n, d] -> y [n, d] (overwritten); tokens with no slot get 0. residual [n, d] (optional) is
// added to y by the combine (combine_forward's residual).
// times (optional): each phase's wall time is added to it (dispatch, GEMMs, GELU, combine).
void experts_forward(float* y, ExpertActivations& act, const RoutingPlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f, Precision precision,
                     PhaseTimes* times = nullptr, const float* residual = nullptr);

// dy [n, d] -> dx [n, d] (+=), dw1 [e, d, f] (+=), dw2 [e, f, d] (+=), dgate [S] (overwritten).
// precision must be the forward's (its bf16 copies are read).
void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, ExpertScratch& scratch,
                      const float* dy, const ExpertActivations& act, const RoutingPlan& plan,
                      const float* w1, const float* w2, int d, int f, Precision precision,
                      PhaseTimes* times = nullptr);

}  // namespace ecmoe
