#include "cuda/cuda_check.h"

#include "core/error.h"

namespace ecmoe::cuda {

void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess)
    fail("CUDA error: ", cudaGetErrorString(status), " (", cudaGetErrorName(status), ") in ", call,
         " at ", file, ":", line);
}

void check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLAS error: ", cublasGetStatusString(status), " in ", call, " at ", file, ":", line);
}

}  // namespace ecmoe::cuda
