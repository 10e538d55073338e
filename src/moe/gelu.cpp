#include "moe/gelu.h"

#include <vector>

#include "core/vecmath.h"

namespace ecmoe {

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr int64_t kChunk = 4096;  // fixed chunking: results never depend on the thread count
}  // namespace

void gelu_forward(float* out, const float* a, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    float buf[kChunk];
    for (int64_t j = 0; j < len; ++j) buf[j] = a[c + j] * kInvSqrt2;
    vec_erf(buf, buf, len);
    for (int64_t j = 0; j < len; ++j) out[c + j] = 0.5f * a[c + j] * (1.f + buf[j]);
  }
}

void gelu_backward(float* da, const float* dout, const float* a, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    float cdf[kChunk], pdf[kChunk];
    for (int64_t j = 0; j < len; ++j) {
      cdf[j] = a[c + j] * kInvSqrt2;
      pdf[j] = -0.5f * a[c + j] * a[c + j];
    }
    vec_erf(cdf, cdf, len);
    vec_exp(pdf, pdf, len);
    for (int64_t j = 0; j < len; ++j)
      da[c + j] = dout[c + j] * (0.5f * (1.f + cdf[j]) + a[c + j] * kInvSqrt2Pi * pdf[j]);
  }
}

}  // namespace ecmoe
