#include "cuda/cuda_check.h"

#include <cxxabi.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

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

void launch_failed(cudaError_t status, const void* kernel, dim3 grid, dim3 block,
                   size_t shared_bytes) {
  std::string name = "?";
#if CUDART_VERSION >= 12030  // cudaFuncGetName came with CUDA 12.3
  const char* mangled = nullptr;
  if (cudaFuncGetName(&mangled, kernel) == cudaSuccess && mangled != nullptr) {
    int demangled_ok = -1;
    const std::unique_ptr<char, decltype(&std::free)> demangled(
        abi::__cxa_demangle(mangled, nullptr, nullptr, &demangled_ok), &std::free);
    name = demangled_ok == 0 && demangled ? demangled.get() : mangled;
  }
#endif
  std::string allows;
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) == cudaSuccess)
    allows = "; the kernel allows " + std::to_string(attr.maxThreadsPerBlock) +
             " threads a block (" + std::to_string(attr.numRegs) + " registers a thread, " +
             std::to_string(attr.sharedSizeBytes) + " bytes of static shared memory, " +
             std::to_string(attr.maxDynamicSharedSizeBytes) + " dynamic at most)";
  (void)cudaGetLastError();  // the attribute calls' own errors, if any, are not the launch's
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  fail("CUDA error: ", cudaGetErrorString(status), " (", cudaGetErrorName(status),
       ") launching kernel ", name, " with grid (", grid.x, ",", grid.y, ",", grid.z, "), block (",
       block.x, ",", block.y, ",", block.z, ") = ", threads, " threads, ", shared_bytes,
       " bytes of dynamic shared memory", allows);
}

}  // namespace ecmoe::cuda
