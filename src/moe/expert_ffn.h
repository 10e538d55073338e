// The experts over a routing plan: dispatch (gather), per-expert GELU FFNs as grouped GEMMs, and
// combine (gated sum over each token's slots in expert order); the backward pass is the adjoint of
// each step, over the same plan. Shapes: x, y [n, d]; w1 [e, d, f]; w2 [e, f, d]; slots S.
#pragma once
#include "core/aligned.h"
#include "moe/routing_plan.h"

namespace ecmoe {

struct ExpertActivations {
  FloatVec x_in;    // [S, d] gathered inputs
  FloatVec pre;     // [S, f] x_in · W1
  FloatVec hidden;  // [S, f] gelu(pre)
  FloatVec cdf;     // [S, f] Phi(pre), reused by GELU's backward
  FloatVec out;     // [S, d] hidden · W2, before the gate
};

struct ExpertScratch {  // backward temporaries, kept to avoid reallocating every step
  FloatVec grad_d;      // [S, d]
  FloatVec grad_f;      // [S, f]
};

// x [n, d] -> y [n, d] (overwritten); tokens with no slot get 0.
void experts_forward(float* y, ExpertActivations& act, const RoutingPlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f);

// dy [n, d] -> dx [n, d] (+=), dw1 [e, d, f] (+=), dw2 [e, f, d] (+=), dgate [S] (overwritten)
void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, ExpertScratch& scratch,
                      const float* dy, const ExpertActivations& act, const RoutingPlan& plan,
                      const float* w1, const float* w2, int d, int f);

}  // namespace ecmoe
