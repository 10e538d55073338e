// Copies from global to shared memory that do not wait (PTX cp.async, sm_80 on): a thread issues
// 16-byte copies, commits them as a group, and later waits until at most N of its newest groups
// are still in flight; the bytes are then in shared memory for it, and for the block's other
// threads after a __syncthreads. A kernel issues the next tile's copies before it computes on
// the current one, so the copy overlaps the work (double buffering). On the emulation
// (tests/cudaemu) a copy is performed only at the wait that completes it, so reading a tile
// before its wait shows.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ecmoe::cuda {

// 16 bytes, both addresses 16-byte aligned: shared_dst in shared memory, global_src in global.
__device__ __forceinline__ void copy_async_16(void* shared_dst, const void* global_src) {
#ifdef __CUDACC__
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src)
               : "memory");
#else
  cudaemu::cp_async(shared_dst, global_src, 16);
#endif
}

// The copies issued since the last commit become one group.
__device__ __forceinline__ void commit_async_copies() {
#ifdef __CUDACC__
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
  cudaemu::cp_async_commit();
#endif
}

// Returns once at most the N newest committed groups of this thread are in flight.
template <int N>
__device__ __forceinline__ void wait_async_copies() {
#ifdef __CUDACC__
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
  cudaemu::cp_async_wait(N);
#endif
}

}  // namespace ecmoe::cuda
