// AdamW's per-element update: one implementation of the arithmetic, run by the CPU's AdamW
// (optim/adamw.cpp) and by the CUDA backend's (cuda/optimizer.cu), so that both give the same
// bits. Every rounding step is spelled out: the two moment updates and the final step are fused
// multiply-adds (fmaf: one rounding), the rest plain IEEE operations (sqrt and division correctly
// rounded on both sides), so no compiler's contraction choices can make the CPU and the GPU
// differ. The fusions are the ones GCC's contraction made of the earlier a·b + c code, so the CPU's
// results did not change when the update moved here.
#pragma once
#include <cmath>

#include "core/host_device.h"

namespace ecmoe {

// The step's constants, from AdamWConfig, the step number t and the learning rate, each computed
// in double and rounded to float once (torch's Python floats do the same): adamw_step_constants.
struct AdamWStepConstants {
  float step_size = 0;     // lr / (1 − β1ᵗ)
  float bias2_sqrt = 0;    // √(1 − β2ᵗ)
  float decay_factor = 1;  // 1 − lr·weight_decay: what a decayed tensor's parameter is scaled by
  float beta1 = 0, beta2 = 0, eps = 0;
  float one_minus_beta1 = 0, one_minus_beta2 = 0;
};

// One element: decay is k.decay_factor for a decayed tensor, else 1.
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
//   p ← p·decay − step_size · m / (√v / √(1 − β2ᵗ) + eps)
ECMOE_HOST_DEVICE inline void adamw_update(float& p, float& m, float& v, float g, float decay,
                                           const AdamWStepConstants& k) {
  const float mi = fmaf(k.beta1, m, k.one_minus_beta1 * g);
  const float vi = fmaf(k.beta2, v, (k.one_minus_beta2 * g) * g);
  m = mi;
  v = vi;
  const float denom = sqrtf(vi) / k.bias2_sqrt + k.eps;
  p = fmaf(decay, p, -(k.step_size * (mi / denom)));
}

}  // namespace ecmoe
