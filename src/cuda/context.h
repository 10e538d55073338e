// The CUDA backend's context: the device, one stream on which every op of the backend runs in
// order, and the cuBLAS handle bound to it (in its default, deterministic mode: no atomics, the
// same algorithms for the same shapes). One per process, made on first use.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "core/phase_times.h"

namespace ecmoe::cuda {

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  void synchronize() const;
};

// The number of CUDA devices usable here; 0 without a GPU or a driver (never throws).
int device_count();
// Why no device is usable ("" when one is): the runtime's own words.
std::string no_device_reason();
// One line describing device 0: name, compute capability, memory, SMs, driver and runtime.
std::string device_summary();
// The process's context on device 0; throws ecmoe::Error when no device is usable.
Context& context();
// Bytes of device 0's memory free now (cudaMemGetInfo), after the context is made.
double free_memory_bytes();

// core/phase_times.h's phase_start / phase_lap for work on the context's stream: with timing on
// (times not null), the stream is synchronised first, so a phase holds its kernels' time.
void phase_start(PhaseTimes* times, const Context& ctx);
void phase_lap(PhaseTimes* times, const Context& ctx, const char* phase);

}  // namespace ecmoe::cuda
