// The six expert GEMMs of one layer step (two forward, four backward) over a plan, as plain
// problem lists: used to time the GEMMs alone and to compare with the library's own speed.
#pragma once
#include <vector>

#include "core/aligned.h"
#include "core/gemm.h"
#include "moe/routing_plan.h"

namespace ecmoe {

struct ExpertGemmWorkspace {
  FloatVec x_in, pre, out, w1, w2, dw1, dw2;  // sized for the plan by make_expert_gemms
};

// Per expert with slots: forward x_in·W1, hidden·W2; backward d_out·W2^T, hidden^T·d_out,
// x_in^T·d_pre, d_pre·W1^T. Operands are scratch buffers of the right sizes.
std::vector<GemmProblem> make_expert_gemms(const RoutingPlan& plan, int d, int f,
                                           ExpertGemmWorkspace& ws);
double expert_gemm_flops(const RoutingPlan& plan, int d, int f);  // 12 · slots · d · f

}  // namespace ecmoe
