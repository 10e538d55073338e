// Slow, obvious reference implementations kept for tests: per-token loops in double precision,
// full sorts instead of selections. Nothing here is used by the engine itself.
#pragma once
#include <vector>

#include "moe/routing_plan.h"

namespace ecmoe::reference {

// probs [n, e] -> for each expert, its k best tokens (ties: lower index), ascending
std::vector<std::vector<int>> expert_choice(const float* probs, int n, int e, int k);

// One expert's GELU FFN on one token: x [d], w1 [d, f], w2 [f, d] -> out [d]
std::vector<double> expert_ffn(const float* x, const float* w1, const float* w2, int d, int f);

// y [n, d] = for each token, the gated sum of its experts' outputs over the plan
std::vector<double> moe_forward(const RoutingPlan& plan, const float* x, const float* w1,
                                const float* w2, int d, int f);

// y [n, d] = sum over all experts i of probs[t, i] · FFN_i(x[t]): the dense softmax mixture
std::vector<double> dense_mixture(const float* probs, const float* x, const float* w1,
                                  const float* w2, int n, int e, int d, int f);

}  // namespace ecmoe::reference
