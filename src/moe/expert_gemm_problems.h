// The six expert GEMMs of one layer step (two forward, four backward) over a plan, as plain
// problem lists: used to time the GEMMs alone and to compare with the library's own speed.
#pragma once
#include <vector>

#include "core/aligned.h"
#include "core/bf16.h"
#include "core/gemm.h"
#include "core/precision.h"
#include "moe/routing_plan.h"

namespace ecmoe {

struct ExpertGemmWorkspace {
  FloatVec x_in, pre, out, w1, w2, dw1, dw2;   // sized for the plan by make_expert_gemms
  Bf16Vec x_in16, pre16, out16, w1_16, w2_16;  // their bf16 copies (kBf16)
};

// Per expert with slots: forward x_in·W1, hidden·W2; backward d_out·W2^T, hidden^T·d_out,
// x_in^T·d_pre, d_pre·W1^T. Operands are scratch buffers of the right sizes. With kBf16 the
// problems read bf16 copies made beforehand, as the layer's GEMMs do (conversion not timed).
std::vector<GemmProblem> make_expert_gemms(const RoutingPlan& plan, int d, int f,
                                           ExpertGemmWorkspace& ws,
                                           Precision precision = Precision::kFp32);
double expert_gemm_flops(const RoutingPlan& plan, int d, int f);  // 12 · slots · d · f

}  // namespace ecmoe
