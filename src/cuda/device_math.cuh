// Device-side scalar helpers shared by the backend's kernels: bf16 rounding with the CPU's bits
// (core/bf16.h: nearest even, quiet NaN), the exact GELU's pieces (nn/gelu.h's constants), launch
// sizes, float order keys.
#pragma once
#include <cstdint>

namespace ecmoe::cuda {

__device__ __forceinline__ uint16_t bf16_bits(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
__device__ __forceinline__ float store_as(float x, float*) { return x; }
__device__ __forceinline__ uint16_t store_as(float x, uint16_t*) { return bf16_bits(x); }

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
__device__ __forceinline__ float gelu_cdf(float a) { return 0.5f * (1.f + erff(a * kInvSqrt2)); }

// Unsigned keys that order as the floats do (-0 below +0: callers that compare by value keep
// -0 out), and back.
__device__ __forceinline__ unsigned order_key(float f) {
  const unsigned b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(unsigned k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Threads for a kernel that gives one block to a row of d elements: d rounded up to a warp,
// at most 256.
inline int row_threads(int d) {
  const int w = (d + 31) / 32 * 32;
  return w < 32 ? 32 : (w > 256 ? 256 : w);
}
inline unsigned blocks_for(int64_t items, int threads) {
  const int64_t b = (items + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b);
}

}  // namespace ecmoe::cuda
