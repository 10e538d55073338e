#include "moe/softmax_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ecmoe {

void softmax_rows_forward(float* probs, const float* logits, int n, int e) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    const float* z = logits + int64_t(t) * e;
    float* p = probs + int64_t(t) * e;
    float m = z[0];
    for (int i = 1; i < e; ++i) m = std::max(m, z[i]);
    float sum = 0.f;
    for (int i = 0; i < e; ++i) sum += (p[i] = std::exp(z[i] - m));
    const float inv = 1.f / sum;
    for (int i = 0; i < e; ++i) p[i] *= inv;
  }
}

void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    const float* p = probs + int64_t(t) * e;
    const float* dp = dprobs + int64_t(t) * e;
    float dot = 0.f;
    for (int i = 0; i < e; ++i) dot += p[i] * dp[i];
    float* dz = dlogits + int64_t(t) * e;
    for (int i = 0; i < e; ++i) dz[i] += p[i] * (dp[i] - dot);
  }
}

}  // namespace ecmoe
