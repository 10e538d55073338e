// Errors of the CUDA runtime and cuBLAS as ecmoe::Error: one line naming the call, the error and
// where it happened. Every CUDA call of the backend goes through ECMOE_CUDA_CHECK.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace ecmoe::cuda {

void check(cudaError_t status, const char* call, const char* file, int line);
void check(cublasStatus_t status, const char* call, const char* file, int line);

}  // namespace ecmoe::cuda

#define ECMOE_CUDA_CHECK(call) ::ecmoe::cuda::check((call), #call, __FILE__, __LINE__)
