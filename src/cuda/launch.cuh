// One kernel launch: configuration, stream and the check of the launch in one call, so that every
// launch of the backend is checked, and so that the same sources also compile as C++ against the
// host emulation of CUDA (tests/cudaemu, docs/cuda.md "Without a GPU"), which has no <<< >>>.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "cuda/cuda_check.h"

namespace ecmoe::cuda {

// kernel<<<grid, block, shared_bytes, stream>>>(args...), then the launch's error: a bad
// configuration fails here, naming the kernel and what it allows (cuda_check.h launch_failed),
// a fault inside the kernel at the next synchronisation.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
#ifdef __CUDACC__
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#else
  cudaemu::launch(kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
#endif
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess)
    launch_failed(status, reinterpret_cast<const void*>(kernel), grid, block, shared_bytes);
}

// The block's dynamic shared memory (the launch's shared_bytes), 128-byte aligned.
__device__ __forceinline__ unsigned char* dynamic_shared_memory() {
#ifdef __CUDACC__
  extern __shared__ __align__(128) unsigned char smem[];
  return smem;
#else
  return cudaemu::dynamic_shared_memory();
#endif
}

}  // namespace ecmoe::cuda
