#include "cuda/context.h"

#include <cstddef>
#include <cstdint>
#include <sstream>

#include "core/error.h"
#include "cuda/cuda_check.h"

namespace ecmoe::cuda {

void Context::synchronize() const { ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream)); }

const uint16_t* Context::bf16_weights(const float* w, int64_t n) const {
  ParamsBf16& r = params_bf16;
  // As addresses: w may lie in another allocation, which pointers may not be compared with.
  const auto at = reinterpret_cast<uintptr_t>(w), begin = reinterpret_cast<uintptr_t>(r.params);
  if (r.params == nullptr || at < begin ||
      at + uintptr_t(n) * sizeof(float) > begin + uintptr_t(r.size) * sizeof(float))
    return nullptr;
  if (r.copy == nullptr) {
    r.wanted = true;
    return nullptr;
  }
  return r.copy + (w - r.params);
}

void Context::wrote(const void* p, std::size_t bytes) const {
  ParamsBf16& r = params_bf16;
  const auto a = reinterpret_cast<uintptr_t>(p), begin = reinterpret_cast<uintptr_t>(r.params);
  const uintptr_t end = begin + uintptr_t(r.size) * sizeof(float);
  if (r.copy != nullptr && a < end && a + bytes > begin) r.copy = nullptr;
  grads.settle(p, bytes, stream);
}

void Context::reading(const void* p, std::size_t bytes) const { grads.settle(p, bytes, stream); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a missing driver
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  cudaGetLastError();
  if (status != cudaSuccess) return cudaGetErrorString(status);
  return n == 0 ? "no CUDA device" : "";
}

std::string device_summary() {
  if (device_count() == 0) return "none (" + no_device_reason() + ")";
  cudaDeviceProp prop{};
  ECMOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  ECMOE_CUDA_CHECK(cudaDriverGetVersion(&driver));
  ECMOE_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  std::ostringstream out;
  out << prop.name << ", sm_" << prop.major << prop.minor << ", " << (prop.totalGlobalMem >> 20)
      << " MiB, " << prop.multiProcessorCount << " SMs, driver " << driver / 1000 << "."
      << driver % 1000 / 10 << ", runtime " << runtime / 1000 << "." << runtime % 1000 / 10;
  return out.str();
}

double free_memory_bytes() {
  context();  // the device and its CUDA context first: they hold memory of their own
  size_t free = 0, total = 0;
  ECMOE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return double(free);
}

void phase_start(PhaseTimes* times, const Context& ctx) {
  if (!times) return;
  ctx.synchronize();
  times->start();
}

void phase_lap(PhaseTimes* times, const Context& ctx, const char* phase) {
  if (!times) return;
  ctx.synchronize();
  times->lap(phase);
}

Context& context() {
  static Context* ctx = [] {
    ECMOE_CHECK(device_count() > 0, "--device cuda: no usable CUDA device (", no_device_reason(),
                ")");
    auto* c = new Context;  // lives for the process: the driver tears down at exit
    ECMOE_CUDA_CHECK(cudaSetDevice(c->device));
    ECMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    ECMOE_CUDA_CHECK(cublasCreate(&c->blas));
    ECMOE_CUDA_CHECK(cublasSetStream(c->blas, c->stream));
    return c;
  }();
  return *ctx;
}

}  // namespace ecmoe::cuda
