// The adjoint of the gates: a slot's gate gradient into the router's scores, through the
// plan's gate definition (constant, score, or score renormalised over the token's choices).
#pragma once

#include "moe/routing_plan.h"

namespace ecmoe {

// dgate [slots] -> accumulates dprobs [n, e] through the plan's gate definition
void gate_backward(float* dprobs, const RoutingPlan& plan, const float* probs, const float* dgate);

}  // namespace ecmoe
