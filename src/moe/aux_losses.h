// The auxiliary losses on the router's scores: load balancing (per routing group) and z-loss,
// their weighted total, and their gradients.
#pragma once

namespace ecmoe {

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

}  // namespace ecmoe
