// V consecutive elements as one access (V = 4: 16 bytes of fp32, 8 of bf16; V = 1: one element):
// the memory-bound kernels' loads and stores. A GPU keeps its memory busy only with enough bytes
// in flight (tens of KB a multiprocessor on an H200), and a thread that loads one float at a
// time keeps too few; so the elementwise and row kernels take four at a time where their pointers
// allow it (aligned_for_4), else one, with the same arithmetic per element: the same bits.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda/device_math.cuh"
#include "cuda/launch.cuh"

namespace ecmoe::cuda {

template <int V>
struct Floats {
  float v[V];
};

template <int V>
__device__ __forceinline__ Floats<V> load_floats(const float* p) {
  static_assert(V == 1 || V == 4);
  Floats<V> r;
  if constexpr (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
  } else {
    r.v[0] = p[0];
  }
  return r;
}

// p[0, V) = r, as fp32 or rounded to bf16 (bf16_bits: the CPU's rounding).
template <int V, typename T>
__device__ __forceinline__ void store_floats(T* p, const Floats<V>& r) {
  static_assert(V == 1 || V == 4);
  if constexpr (V == 4 && sizeof(T) == sizeof(float)) {
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  } else if constexpr (V == 4) {
    uint2 u;
    u.x = uint32_t(bf16_bits(r.v[0])) | uint32_t(bf16_bits(r.v[1])) << 16;
    u.y = uint32_t(bf16_bits(r.v[2])) | uint32_t(bf16_bits(r.v[3])) << 16;
    *reinterpret_cast<uint2*>(p) = u;
  } else {
    p[0] = store_as(r.v[0], p);
  }
}

// An elementwise kernel's loop, V elements at a time: f.template operator()<W>(j) for elements
// [j, j + W); thread i takes [V·i, V·i + V) of the first n - n % V, then the grid's width on, and
// the grid's first thread also the last n % V, one at a time. f is a lambda template<int W>.
template <int V, typename F>
__device__ __forceinline__ void for_each_group(int64_t n, F&& f) {
  const int64_t body = n / V * V, stride = int64_t(gridDim.x) * blockDim.x * V;
  for (int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V; j < body; j += stride)
    f.template operator()<V>(j);
  if (blockIdx.x == 0 && threadIdx.x == 0)
    for (int64_t j = body; j < n; ++j) f.template operator()<1>(j);
}

// Whether every p may be read or written four elements at a time (16 bytes of fp32, 8 of bf16).
template <typename... T>
inline bool aligned_for_4(const T*... p) {
  return ((reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0) && ...);
}
// Whether rows of d elements at every p may be taken four columns at a time.
template <typename... T>
inline bool rows_by_4(int d, const T*... p) {
  return d % 4 == 0 && aligned_for_4(p...);
}

// An elementwise kernel (for_each_group) over n elements: its instance taking four at a time
// (k4) where by_4, else the one taking one (k1), in blocks of `threads`.
template <typename... P, typename... Args>
void launch_elementwise(bool by_4, void (*k4)(P...), void (*k1)(P...), int64_t n, int threads,
                        cudaStream_t stream, Args&&... args) {
  const int v = by_4 ? 4 : 1;
  launch(by_4 ? k4 : k1, blocks_for((n + v - 1) / v, threads), threads, 0, stream,
         std::forward<Args>(args)...);
}

// A row kernel (a block per row of d elements, each thread V columns at a time) over `rows`
// rows: k4 where by_4 (rows_by_4), else k1.
template <typename... P, typename... Args>
void launch_rows(bool by_4, void (*k4)(P...), void (*k1)(P...), int rows, int d,
                 cudaStream_t stream, Args&&... args) {
  launch(by_4 ? k4 : k1, rows, row_threads(by_4 ? d / 4 : d), 0, stream,
         std::forward<Args>(args)...);
}

}  // namespace ecmoe::cuda
