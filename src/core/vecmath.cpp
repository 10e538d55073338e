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

namespace {
// exp(x) rounds to +0 for every x below ln(2^-150) ≈ -103.972 (the smallest x with a nonzero
// result, glibc's scalar and vector routines alike, is -103.972076). libmvec's expf sends each
// underflowing lane through glibc's scalar slow path (errno and all): a log-domain solver whose
// arguments sit far below that (capped expert choice's, moe/capped_solver.cpp) spent a third of
// its time there. Below kExpZero the lanes get exp(0), discarded, and +0: the same bits.
constexpr float kExpZero = -104.f;
}  // namespace

#ifdef ECMOE_VEC_WIDTH
namespace {
// F over in[0, n), W lanes at a time; every element, the tail too, through the same routine.
template <typename Lanes>
void apply(const float* in, float* out, int64_t n, Lanes lanes) {
  constexpr int W = ECMOE_VEC_WIDTH;
  int64_t i = 0;
  for (; i + W <= n; i += W) ECMOE_STORE(out + i, lanes(ECMOE_LOAD(in + i)));
  if (i < n) {  // tail through the same routine, padded
    alignas(64) float buf[W] = {};
    std::memcpy(buf, in + i, sizeof(float) * (n - i));
    ECMOE_STORE(buf, lanes(ECMOE_LOAD(buf)));
    std::memcpy(out + i, buf, sizeof(float) * (n - i));
  }
}
// expf of the lanes, those below kExpZero (NaN is not) set to +0 without the routine seeing them.
ECMOE_VEC exp_lanes(ECMOE_VEC x) {
#if ECMOE_VEC_WIDTH == 16
  const __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpZero), _CMP_LT_OQ);
  const __m512 y = ECMOE_EXP(_mm512_mask_mov_ps(x, zero, _mm512_setzero_ps()));
  return _mm512_mask_mov_ps(y, zero, _mm512_setzero_ps());
#else
  const __m256 zero = _mm256_cmp_ps(x, _mm256_set1_ps(kExpZero), _CMP_LT_OQ);
  const __m256 y = ECMOE_EXP(_mm256_blendv_ps(x, _mm256_setzero_ps(), zero));
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), zero);
#endif
}
}  // namespace
void vec_erf(const float* in, float* out, int64_t n) { apply(in, out, n, ECMOE_ERF); }
void vec_exp(const float* in, float* out, int64_t n) { apply(in, out, n, exp_lanes); }
#else
void vec_erf(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::erf(in[i]);
}
void vec_exp(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] < kExpZero ? 0.f : std::exp(in[i]);
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
