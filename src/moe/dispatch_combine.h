// Dispatch and combine: the two data movements around the experts, each a named op with its
// adjoint beside it. Every backend implements these four over the same RoutingPlan (the CUDA ones
// are in cuda/moe_ops.h and are tested against these), and both the local and the
// expert-parallel layer call them. Shapes: x, y, dx, dy [n, d]; slot rows [S, d]; gates [S].
// Sums over a token's slots run in the plan's inverse-index order (expert order), so results never
// depend on the thread count.
#pragma once
#include <cstdint>

#include "moe/routing_plan.h"

namespace ecmoe {

// Dispatch (gather): x [n, d] -> x_slots [S, d]; slot s copies the row of its token.
void dispatch_forward(float* x_slots, const float* x, const RoutingPlan& plan, int d);
// The same, rounding each element to bf16 as it is copied.
void dispatch_forward(uint16_t* x_slots16, const float* x, const RoutingPlan& plan, int d);
// Adjoint of dispatch: d_slots [S, d] -> dx [n, d] (+=), each token summing its slots' rows.
void dispatch_backward(float* dx, const float* d_slots, const RoutingPlan& plan, int d);

// Combine (gated sum): out [S, d] -> y [n, d] (overwritten), y[t] = Σ gate[s] · out[s] over
// t's slots; a token with no slot gets 0. With a residual [n, d] (or nullptr), y[t] = Σ +
// residual[t]: the residual added after the sum, the bits of adding it to y afterwards, without
// that pass.
void combine_forward(float* y, const float* out, const RoutingPlan& plan, int d,
                     const float* residual = nullptr);
// Adjoint of combine: dy [n, d] -> d_out [S, d] = gate[s] · dy[t] (overwritten) and
// dgate [S] = <dy[t], out[s]> (dot_fixed's order; overwritten).
void combine_backward(float* d_out, float* dgate, const float* dy, const float* out,
                      const RoutingPlan& plan, int d);
// The same with d_out written in bf16 only (rounded once, as it is written).
void combine_backward(uint16_t* d_out16, float* dgate, const float* dy, const float* out,
                      const RoutingPlan& plan, int d);

}  // namespace ecmoe
