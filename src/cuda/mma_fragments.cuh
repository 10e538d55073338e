// Tensor-core products at register level: PTX mma.m16n8k16 (bf16 operands, fp32 accumulation)
// and its fragments loaded from bf16 tiles in shared memory. Unlike WMMA, the layout of each
// fragment is PTX's documented one, so an fp32 result (C/D fragment) can be rounded into the A
// fragment of the next product without leaving the registers (flash attention's P·V).
//
// Lane l holds, with g = l / 4 and t = l % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
// floating point type"; a bf16x2 register has its lower-indexed element in its low 16 bits):
//   A [16, 16]: a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9],
//               a[3] = A[g+8][2t+8, 2t+9]
//   B [16, 8]:  b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   C, D [16, 8] fp32: c[0], c[1] = C[g][2t, 2t+1], c[2], c[3] = C[g+8][2t, 2t+1]
#pragma once
#include <cstdint>

#ifndef __CUDACC__
#include <mma.h>  // cudaemu::mma_m16n8k16_bf16, ldmatrix_x4_trans
#endif

#include "cuda/device_math.cuh"

namespace ecmoe::cuda::mma {

// d = a·b + d. Every lane of the warp must call it (mma.sync.aligned).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
#ifdef __CUDACC__
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  cudaemu::mma_m16n8k16_bf16(d, a, b);
#endif
}

// Two floats rounded to bf16 (bf16_bits, the CPU's rounding) in one bf16x2 register.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(bf16_bits(lo)) | uint32_t(bf16_bits(hi)) << 16;
}

// The A fragment of a C/D fragment pair: the [16, 16] bf16 operand whose columns [0, 8) are the
// product c0 and [8, 16) the product c1 (two [16, 8] results side by side).
__device__ __forceinline__ void a_from_results(uint32_t (&a)[4], const float (&c0)[4],
                                               const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

__device__ __forceinline__ uint32_t word_at(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// A = tile[0..16)[0..16) of a row-major bf16 tile with leading dimension ld (even; tile 4-byte
// aligned).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint16_t* tile, int ld) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint16_t* p = tile + g * ld + 2 * t;
  a[0] = word_at(p);
  a[1] = word_at(p + 8 * ld);
  a[2] = word_at(p + 8);
  a[3] = word_at(p + 8 * ld + 8);
}

// B [16, 8] = the transpose of tile[0..8)[0..16): B[k][n] = tile[n][k] (Kᵀ from K's rows).
__device__ __forceinline__ void load_b_transposed(uint32_t (&b)[2], const uint16_t* tile, int ld) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint16_t* p = tile + g * ld + 2 * t;
  b[0] = word_at(p);
  b[1] = word_at(p + 8);
}

// The B fragments [16, 8] of columns [0, 8) and [8, 16) of tile[0..16)[0..16): B[k][n] =
// tile[k][n] (V's rows as the k of P·V), by one ldmatrix.x4.trans: lane 8i + r names row r of
// matrix i, matrices 0 and 1 the rows [0, 8) and [8, 16) of columns [0, 8), 2 and 3 those of
// columns [8, 16); .trans hands lane l the elements (2t, g) and (2t + 1, g) of each, which is
// B's b[0] and b[1]. tile is in shared memory, 16-byte aligned, ld a multiple of 8.
__device__ __forceinline__ void load_b_pair(uint32_t (&b0)[2], uint32_t (&b1)[2],
                                            const uint16_t* tile, int ld) {
  const int lane = threadIdx.x % 32, i = lane / 8, r = lane % 8;
  const uint16_t* row = tile + ((i & 1) * 8 + r) * ld + (i >> 1) * 8;
#ifdef __CUDACC__
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
               : "r"(address));
#else
  uint32_t r4[4];
  cudaemu::ldmatrix_x4_trans(r4, row);
  b0[0] = r4[0];
  b0[1] = r4[1];
  b1[0] = r4[2];
  b1[1] = r4[3];
#endif
}

}  // namespace ecmoe::cuda::mma
