// The CUDA backend's context: the device, one stream on which every op of the backend runs in
// order, and the cuBLAS handle bound to it (in its default, deterministic mode: no atomics, the
// same algorithms for the same shapes). One per process, made on first use.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/phase_times.h"
#include "cuda/lazy_zero_grads.h"

namespace ecmoe::cuda {

// A training run's fp32 parameters on the device and, once a bf16 GEMM has asked for one of
// them, their bf16 copy, which the optimizer writes beside every update (cuda/optimizer.h's
// DeviceAdamW::step with a copy): bf16 GEMMs then read their weights from it instead of rounding
// them at every use. The owner (cuda/optimizer_device.h) registers the range; a write into it by
// anyone else (Context::wrote: the backend's uploads) makes the copy stale until the next update
// writes it whole again. The copy holds bf16_bits of each parameter: the same operands, the same
// bits as rounding them at each use.
struct ParamsBf16 {
  const float* params = nullptr;  // the registered range [params, params + size)
  int64_t size = 0;
  const uint16_t* copy = nullptr;  // its bf16 copy, while valid (else nullptr)
  bool wanted = false;             // a bf16 GEMM took a weight from the range with no copy valid
};

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  mutable ParamsBf16 params_bf16;  // a cache: the ops that read it take a const Context
  // The training gradients' lazy zeroing (attached by their owner, cuda/optimizer_device.h).
  mutable LazyZeroGrads grads;
  void synchronize() const;
  // The bf16 copy of the weights [w, w + n) if params_bf16 holds them (else nullptr, and if they
  // are inside the registered range, the owner is asked to keep a copy from its next update).
  const uint16_t* bf16_weights(const float* w, int64_t n) const;
  // Device memory [p, p + bytes) is about to be overwritten by a copy queued next on the stream:
  // a bf16 copy of it goes stale; gradients there that are logically zero are zeroed first.
  void wrote(const void* p, std::size_t bytes) const;
  // Device memory [p, p + bytes) is about to be read by a copy queued next on the stream:
  // gradients there that are logically zero are zeroed first.
  void reading(const void* p, std::size_t bytes) const;
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
