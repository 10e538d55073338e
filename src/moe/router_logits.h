// The router's linear map: logits = x · Wg, in fp32 with a fixed summation order, so the
// scores (and therefore every top-k) are bitwise the same at any thread count.
#pragma once

namespace ecmoe {

// x [n, d], w [d, e] -> logits [n, e]
void router_logits_forward(float* logits, const float* x, const float* w, int n, int d, int e);
// accumulates dx [n, d] += dlogits · w^T and dw [d, e] += x^T · dlogits
void router_logits_backward(float* dx, float* dw, const float* dlogits, const float* x,
                            const float* w, int n, int d, int e);

}  // namespace ecmoe
