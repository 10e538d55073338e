// bfloat16 storage: the upper 16 bits of an IEEE fp32 (8 exponent bits, 7 stored mantissa bits,
// unit roundoff 2^-8). Conversions round to nearest, ties to even, in plain integer arithmetic
// (the same bits on every CPU, with or without bf16 instructions); NaN stays NaN, infinities stay
// infinite, values beyond bf16's largest finite round to infinity as IEEE rounding does.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aligned.h"

namespace ecmoe {

using Bf16Vec = std::vector<uint16_t, AlignedAllocator<uint16_t>>;

inline uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// x rounded to the nearest bf16, as an fp32 (exact: every bf16 is an fp32).
inline float round_to_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

// out[i] = bf16(in[i]) for a [rows, cols] block with leading dimension ld_in, written densely
// (leading dimension cols). Parallel over rows unless called inside a parallel region.
void convert_to_bf16(uint16_t* out, const float* in, int64_t rows, int64_t cols, int64_t ld_in);
void convert_to_bf16(uint16_t* out, const float* in, int64_t n);  // a contiguous run
// The same values as fp32 (each rounded to bf16 and widened back): the fallback path's operands.
void round_to_bf16(float* out, const float* in, int64_t rows, int64_t cols, int64_t ld_in);
void bf16_to_float(float* out, const uint16_t* in, int64_t rows, int64_t cols, int64_t ld_in);

}  // namespace ecmoe
