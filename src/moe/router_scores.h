// The router's differentiable part: logits = x · Wg, scores = softmax over experts, the
// auxiliary losses, and the adjoint of the gates. All in fp32 with a fixed summation order, so
// scores (and therefore every top-k) are bitwise the same at any thread count.
#pragma once
#include <vector>

#include "moe/moe_config.h"
#include "moe/routing_plan.h"

namespace ecmoe {

struct GroupRange {
  int begin;
  int size;
};
// Consecutive groups of group_size tokens (0 = one group); the last one may be shorter.
std::vector<GroupRange> routing_groups(int n_tokens, int group_size);

// x [n, d], w [d, e] -> logits [n, e]
void router_logits_forward(float* logits, const float* x, const float* w, int n, int d, int e);
// accumulates dx [n, d] += dlogits · w^T and dw [d, e] += x^T · dlogits
void router_logits_backward(float* dx, float* dw, const float* dlogits, const float* x,
                            const float* w, int n, int d, int e);

// logits [n, e] -> probs [n, e], softmax over each row
void softmax_rows_forward(float* probs, const float* logits, int n, int e);
// accumulates dlogits [n, e] += J^T · dprobs
void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e);

// Sum over tokens of the entropy of each token's router distribution (nats).
double router_entropy_sum(const float* probs, int n, int e);

struct AuxLosses {
  float load_balance = 0.f;  // mean over groups of e · sum_i f_i · P_i (1 when balanced)
  float z_loss = 0.f;        // mean over tokens of logsumexp(logits)^2
  float weighted_total = 0.f;
};

struct AuxLossWeights {
  float load_balance = 0.f;
  float z_loss = 0.f;
};

// logits, probs [n, e] -> losses
AuxLosses aux_losses_forward(const float* logits, const float* probs, int n, int e, int group_size,
                             AuxLossWeights weights);
// accumulates the gradients of weights · losses into dlogits and dprobs [n, e]
void aux_losses_backward(float* dlogits, float* dprobs, const float* logits, const float* probs,
                         int n, int e, int group_size, AuxLossWeights weights);

// dgate [slots] -> accumulates dprobs [n, e] through the plan's gate definition
void gate_backward(float* dprobs, const RoutingPlan& plan, const float* probs, const float* dgate);

}  // namespace ecmoe
