// Sums and maxima inside a warp or a block, in fixed trees: no atomics, so the same inputs give
// the same bits run to run (for the same block size). combine_lanes16 is nn/reduce.h's tree, for
// kernels that keep the CPU's 16 running sums of a row in lanes 0..15.
#pragma once
#include <cmath>

#include "nn/reduce.h"

namespace ecmoe::cuda {

inline constexpr unsigned kFullMask = 0xffffffffu;
static_assert(nn::detail::kLanes == 16, "combine_lanes16 is nn/reduce.h's 16-lane tree");

// Lanes 0..15 of the (whole) warp hold nn/reduce.h's 16 running sums acc[0..15]; returns
// combine_lanes(acc) to every lane: acc[l] += acc[l + w] for w = 8, 4, 2, 1, the CPU's additions
// in the CPU's order. Lanes 16..31 contribute nothing.
__device__ __forceinline__ float combine_lanes16(float v) {
  for (int width = nn::detail::kLanes / 2; width > 0; width /= 2)
    v += __shfl_down_sync(kFullMask, v, width);
  return __shfl_sync(kFullMask, v, 0);
}

// The sum of the warp's 32 values, to every lane (a butterfly: lane l and lane l ^ o add the same
// two values, so every lane ends with the same bits).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// The sum over the block (blockDim.x a multiple of 32, at most 1024), to every thread: warp sums,
// then the warps' sums in a second warp tree. Every thread of the block must call it; `shared`
// holds 32 values and may be reused by the next call.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_sum(lane < int(blockDim.x / 32) ? shared[lane] : T(0));
}
__device__ inline float block_max(float v, float* shared) {
  v = warp_max(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_max(lane < int(blockDim.x / 32) ? shared[lane] : -INFINITY);
}

}  // namespace ecmoe::cuda
