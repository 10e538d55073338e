#include "core/vecmath.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#if defined(__AVX512F__)
extern "C" __m512 _ZGVeN16v_erff(__m512);
extern "C" __m512 _ZGVeN16v_expf(__m512);
#define ECMOE_VEC_WIDTH 16
#define ECMOE_VEC __m512
#define ECMOE_LOAD _mm512_loadu_ps
#define ECMOE_STORE _mm512_storeu_ps
#define ECMOE_ERF _ZGVeN16v_erff
#define ECMOE_EXP _ZGVeN16v_expf
#elif defined(__AVX2__)
extern "C" __m256 _ZGVdN8v_erff(__m256);
extern "C" __m256 _ZGVdN8v_expf(__m256);
#define ECMOE_VEC_WIDTH 8
#define ECMOE_VEC __m256
#define ECMOE_LOAD _mm256_loadu_ps
#define ECMOE_STORE _mm256_storeu_ps
#define ECMOE_ERF _ZGVdN8v_erff
#define ECMOE_EXP _ZGVdN8v_expf
#endif

namespace ecmoe {

#ifdef ECMOE_VEC_WIDTH
namespace {
template <ECMOE_VEC (*F)(ECMOE_VEC)>
void apply(const float* in, float* out, int64_t n) {
  constexpr int W = ECMOE_VEC_WIDTH;
  int64_t i = 0;
  for (; i + W <= n; i += W) ECMOE_STORE(out + i, F(ECMOE_LOAD(in + i)));
  if (i < n) {  // tail through the same routine, padded
    alignas(64) float buf[W] = {};
    std::memcpy(buf, in + i, sizeof(float) * (n - i));
    ECMOE_STORE(buf, F(ECMOE_LOAD(buf)));
    std::memcpy(out + i, buf, sizeof(float) * (n - i));
  }
}
}  // namespace
void vec_erf(const float* in, float* out, int64_t n) { apply<ECMOE_ERF>(in, out, n); }
void vec_exp(const float* in, float* out, int64_t n) { apply<ECMOE_EXP>(in, out, n); }
#else
void vec_erf(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::erf(in[i]);
}
void vec_exp(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
}
#endif

float dot_fixed(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  for (int j = 0; i + j < n; ++j) acc[j] += a[i + j] * b[i + j];
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  return acc[0];
}

}  // namespace ecmoe
