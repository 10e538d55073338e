// Errors of the CUDA runtime and cuBLAS as ecmoe::Error: one line naming the call, the error and
// where it happened. Every CUDA call of the backend goes through ECMOE_CUDA_CHECK.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace ecmoe::cuda {

void check(cudaError_t status, const char* call, const char* file, int line);
void check(cublasStatus_t status, const char* call, const char* file, int line);

// A kernel launch that CUDA refused (cuda/launch.cuh): one line naming the kernel, the launch's
// grid, block and dynamic shared memory, and what the kernel allows (its threads a block,
// registers and static shared memory, from cudaFuncGetAttributes), e.g. a block too large for
// the registers nvcc gave it ("too many resources requested for launch").
[[noreturn]] void launch_failed(cudaError_t status, const void* kernel, dim3 grid, dim3 block,
                                size_t shared_bytes);

}  // namespace ecmoe::cuda

#define ECMOE_CUDA_CHECK(call) ::ecmoe::cuda::check((call), #call, __FILE__, __LINE__)
