#include "nn/gelu.h"

#include <algorithm>

#include "core/bf16.h"
#include "core/vecmath.h"

namespace ecmoe::nn {

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr int64_t kChunk = 4096;  // fixed chunking: results never depend on the thread count
}  // namespace

namespace {
inline float store(float x, float*) { return x; }
inline uint16_t store(float x, uint16_t*) { return float_to_bf16(x); }

// phi[j] = Phi(a[j]) for len <= kChunk elements: the one computation of the CDF, whether it is
// stored (forward with cdf) or recomputed (the functions without), so both give the same bits.
void cdf_block(float* phi, const float* a, int64_t len) {
  for (int64_t j = 0; j < len; ++j) phi[j] = a[j] * kInvSqrt2;
  vec_erf(phi, phi, len);
  for (int64_t j = 0; j < len; ++j) phi[j] = 0.5f * (1.f + phi[j]);
}

template <typename Out>
void forward_block(Out* out, float* cdf, const float* a, int64_t n) {
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    cdf_block(cdf + c, a + c, len);
    for (int64_t j = 0; j < len; ++j) out[c + j] = store(a[c + j] * cdf[c + j], out);
  }
}

template <typename Out>
void forward_block(Out* out, const float* a, int64_t n) {  // Phi in a local buffer
  float phi[kChunk];
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    forward_block(out + c, phi, a + c, len);
  }
}

template <typename Out>
void backward_block(Out* da, const float* dout, const float* a, const float* cdf, int64_t n) {
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    float pdf[kChunk];
    for (int64_t j = 0; j < len; ++j) pdf[j] = -0.5f * a[c + j] * a[c + j];
    vec_exp(pdf, pdf, len);
    for (int64_t j = 0; j < len; ++j)
      da[c + j] = store(dout[c + j] * (cdf[c + j] + a[c + j] * kInvSqrt2Pi * pdf[j]), da);
  }
}

template <typename Out>
void backward_block(Out* da, const float* dout, const float* a, int64_t n) {  // Phi recomputed
  float phi[kChunk];
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
    cdf_block(phi, a + c, len);
    backward_block(da + c, dout + c, a + c, phi, len);
  }
}

}  // namespace

// Element results never depend on where a chunk starts (vec_erf/vec_exp pad their tails), so the
// parallel split is free to differ from any other split.
void gelu_forward(float* out, float* cdf, const float* a, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk)
    forward_block(out + c, cdf + c, a + c, std::min(kChunk, n - c));
}

void gelu_forward(uint16_t* out, float* cdf, const float* a, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk)
    forward_block(out + c, cdf + c, a + c, std::min(kChunk, n - c));
}

void gelu_backward(float* da, const float* dout, const float* a, const float* cdf, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk)
    backward_block(da + c, dout + c, a + c, cdf + c, std::min(kChunk, n - c));
}

void gelu_backward(uint16_t* da, const float* dout, const float* a, const float* cdf, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk)
    backward_block(da + c, dout + c, a + c, cdf + c, std::min(kChunk, n - c));
}

void gelu_forward_serial(float* out, const float* a, int64_t n) { forward_block(out, a, n); }
void gelu_forward_serial(uint16_t* out, const float* a, int64_t n) { forward_block(out, a, n); }
void gelu_backward_serial(float* da, const float* dout, const float* a, int64_t n) {
  backward_block(da, dout, a, n);
}
void gelu_backward_serial(uint16_t* da, const float* dout, const float* a, int64_t n) {
  backward_block(da, dout, a, n);
}

}  // namespace ecmoe::nn
