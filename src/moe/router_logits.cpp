#include "moe/router_logits.h"

#include <cstdint>

#include "core/gemm.h"

namespace ecmoe {

void router_logits_forward(float* logits, const float* x, const float* w, int n, int d, int e) {
  // Each logit is a sequential sum over d (vectorised across experts, never across d), so its
  // rounding does not depend on threads, alignment or vector width.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* out = logits + int64_t(t) * e;
    const float* xt = x + int64_t(t) * d;
    for (int i = 0; i < e; ++i) out[i] = 0.f;
    for (int j = 0; j < d; ++j) {
      const float xv = xt[j];
      const float* wr = w + int64_t(j) * e;
      for (int i = 0; i < e; ++i) out[i] += xv * wr[i];
    }
  }
}

void router_logits_backward(float* dx, float* dw, const float* dlogits, const float* x,
                            const float* w, int n, int d, int e) {
  gemm(make_gemm(false, true, n, d, e, dlogits, w, dx, 1.f));
  gemm(make_gemm(true, false, d, e, n, x, dlogits, dw, 1.f));
}

}  // namespace ecmoe
