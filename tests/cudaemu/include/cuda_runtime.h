// cudaemu: the part of the CUDA runtime that ecmoe's CUDA backend uses, emulated on the host, so
// that the backend's own sources (src/cuda/*.cu, compiled as C++) and its tests run without a GPU.
// Kernels run block after block, each block's threads as fibers that switch at __syncthreads,
// warp synchronisations and shuffles; streams are queues that run at synchronisation points, so
// that reading a result before synchronising reads stale memory, as on a GPU. docs/cuda.md
// ("Without a GPU") says what it checks and what it cannot.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// The runtime version the emulation follows (CUDA 13.0's numbering): code that needs a newer
// runtime's call (cudaFuncGetName, 12.3) checks it as it would against CUDA's header.
#define CUDART_VERSION 13000

// ---- qualifiers: kernels are plain functions; a block's __shared__ variables are statics, which
// all its threads (fibers of one OS thread, blocks one after another) share, in a section of their
// own that every block start fills with 0xff bytes (a read of what the block did not write shows;
// GCC ignores the section for statics of templates and inline functions: those are not filled) --
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static __attribute__((section("cudaemu_shared"), aligned(16)))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
typedef cudaDataType_t cudaDataType;

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int l2CacheSize;
  int memoryBusWidth;
};

// ---- host API ------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <typename T>
cudaError_t cudaMallocHost(T** ptr, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <typename R, typename... P>
cudaError_t cudaFuncSetAttribute(R (*func)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// What CUDA says of a kernel. The emulation knows no registers or static shared memory: numRegs
// and sharedSizeBytes are 0, and a block may have 1,024 threads (scripts/check_cuda_launches.py
// checks the real figures against the tests' launches).
struct cudaFuncAttributes {
  size_t sharedSizeBytes = 0, constSizeBytes = 0, localSizeBytes = 0;
  int maxThreadsPerBlock = 0, numRegs = 0, ptxVersion = 0, binaryVersion = 0, cacheModeCA = 0;
  int maxDynamicSharedSizeBytes = 0, preferredShmemCarveout = 0;
};
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func);
// The kernel's mangled name (its symbol in the module's symbol table).
cudaError_t cudaFuncGetName(const char** name, const void* func);

// ---- the emulator's kernel side ----------------------------------------------------------------
namespace cudaemu {

struct Fiber;
struct Block;
namespace detail {
extern thread_local Fiber* tl_fiber;
extern thread_local Block* tl_block;
}  // namespace detail

struct Fiber {
  uint3 thread_idx;
  int linear;  // x + y·bx + z·bx·by
  int state;
  void* sp;
  void* stack;
};

struct Block {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
};

inline int lane() { return detail::tl_fiber->linear & 31; }
inline int linear_thread() { return detail::tl_fiber->linear; }
int block_threads();
// The block's thread count, which must be `declared` (a CUB collective's template argument).
int check_collective_threads(int declared, const char* collective);

// Every live thread of the block arrives before any leaves; `once`, if given, runs once, by the
// last to arrive, before any leaves (the block-wide collectives of cub). plain: __syncthreads
// itself (counted: collective_storage_used), not the emulator's own barriers inside collectives.
void sync_block(const std::function<void()>* once = nullptr, bool plain = false);
// Called once per block-wide collective (from its `once`) with its TempStorage: stops the
// program if the same storage served a collective with no __syncthreads in between (CUB requires
// one before a TempStorage is reused).
void collective_storage_used(const void* temp, const char* collective);
// Every live lane of the caller's warp arrives before any leaves.
// `once`, if given, runs once, by the last lane to arrive, before any leaves (a lane that ends
// instead stops the program: WMMA's warp-wide operations need every lane).
void sync_warp(const std::function<void()>* once = nullptr);
// Scratch of the caller's warp (4 KB at most): the same pointer for all its lanes, always.
void* warp_scratch(size_t bytes);
// Scratch of the block for collectives: `bytes` at least, the same pointer for all its threads.
void* block_scratch(size_t bytes);
unsigned char* dynamic_shared_memory();
// The value `v` of lane `src` of the caller's warp; from a lane that exited or was never launched
// (undefined on a GPU), 0xff bytes.
uint64_t warp_exchange(uint64_t v, int src);
// PTX cp.async.cg.shared.global (16 bytes), cp.async.commit_group, cp.async.wait_group N: a copy
// waits, unperformed, until a wait lets its group complete, so shared memory read before the
// wait (and the __syncthreads after it, for the other threads) holds what was there before, as it
// may on a GPU. A copy that is not 16 bytes of device memory to 16 bytes of shared memory, both
// 16-byte aligned, stops the program. Copies still in flight when the thread ends complete.
void cp_async(void* shared_dst, const void* global_src, size_t bytes);
void cp_async_commit();
void cp_async_wait(int newest_in_flight);  // all but the newest N committed groups complete
// PTX: a warp-synchronous call whose mask leaves out the calling lane is undefined; stops.
void check_in_mask(unsigned mask, const char* call);

// Launches: checked, bound by value, queued on the stream (run at its next synchronisation).
struct Launch {
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
  const void* kernel;
  std::function<void()> body;
};
void submit(Launch launch);
// Whether a kernel may read p: inside (or one past) a cudaMalloc or cudaMallocHost allocation.
bool device_accessible(const void* p);
[[noreturn]] void fatal_argument(const void* kernel, int index, const void* p);
[[noreturn]] void fatal_wmma(const void* p, unsigned ldm, size_t element_bytes);

template <typename T>
void check_argument(const void* kernel, int index, const T& value) {
  if constexpr (std::is_pointer_v<T>) {
    if (value != nullptr && !device_accessible(value)) fatal_argument(kernel, index, value);
  }
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args),
                "kernel launched with a wrong argument count");
  auto bound = std::make_shared<std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
  std::apply(
      [&](const auto&... a) {
        int i = 0;
        (check_argument(reinterpret_cast<const void*>(kernel), i++, a), ...);
      },
      *bound);
  submit(Launch{grid, block, shared_bytes, stream, reinterpret_cast<const void*>(kernel),
                [kernel, bound] { std::apply(kernel, *bound); }});
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace cudaemu

#define threadIdx (::cudaemu::detail::tl_fiber->thread_idx)
#define blockIdx (::cudaemu::detail::tl_block->block_idx)
#define blockDim (::cudaemu::detail::tl_block->block_dim)
#define gridDim (::cudaemu::detail::tl_block->grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { ::cudaemu::sync_block(nullptr, true); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::cudaemu::check_in_mask(mask, "__syncwarp");
  ::cudaemu::sync_warp();
}

// Shuffles with CUDA's width rules: a source outside [0, width) of the caller's group (xor and
// down: a later group) gives the caller's own value.
template <typename T>
T __shfl_sync(unsigned members, T v, int src, int width = 32) {
  ::cudaemu::check_in_mask(members, "__shfl_sync");
  const int lane = ::cudaemu::lane();
  const int base = lane & ~(width - 1);
  return ::cudaemu::from_bits<T>(
      ::cudaemu::warp_exchange(::cudaemu::to_bits(v), base + (src & (width - 1))));
}
template <typename T>
T __shfl_xor_sync(unsigned members, T v, int mask, int width = 32) {
  ::cudaemu::check_in_mask(members, "__shfl_xor_sync");
  const int lane = ::cudaemu::lane();
  const int src = lane ^ mask;
  const bool inside = src <= (lane | (width - 1));
  return ::cudaemu::from_bits<T>(
      ::cudaemu::warp_exchange(::cudaemu::to_bits(v), inside ? src : lane));
}
template <typename T>
T __shfl_down_sync(unsigned members, T v, unsigned delta, int width = 32) {
  ::cudaemu::check_in_mask(members, "__shfl_down_sync");
  const int lane = ::cudaemu::lane();
  const int src = lane + int(delta);
  const bool inside = src <= (lane | (width - 1));
  return ::cudaemu::from_bits<T>(
      ::cudaemu::warp_exchange(::cudaemu::to_bits(v), inside ? src : lane));
}
template <typename T>
T __shfl_up_sync(unsigned members, T v, unsigned delta, int width = 32) {
  ::cudaemu::check_in_mask(members, "__shfl_up_sync");
  const int lane = ::cudaemu::lane();
  const int src = lane - int(delta);
  const bool inside = src >= (lane & ~(width - 1));
  return ::cudaemu::from_bits<T>(
      ::cudaemu::warp_exchange(::cudaemu::to_bits(v), inside ? src : lane));
}

// ---- device functions: atomics (a fiber is never interrupted between two of its statements),
// bit casts, intrinsics, the overloaded min and max of CUDA's device code ------------------------
template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  const T old = *p;
  *p = v < old ? v : old;
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  const T old = *p;
  *p = v > old ? v : old;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

inline unsigned __float_as_uint(float x) {
  return ::cudaemu::from_bits<unsigned>(::cudaemu::to_bits(x));
}
inline float __uint_as_float(unsigned x) {
  return ::cudaemu::from_bits<float>(::cudaemu::to_bits(x));
}
inline int __float_as_int(float x) { return ::cudaemu::from_bits<int>(::cudaemu::to_bits(x)); }
inline float __int_as_float(int x) { return ::cudaemu::from_bits<float>(::cudaemu::to_bits(x)); }
// Rounded on its own: never fused with an addition (the empty asm hides the product from the
// compiler's contraction, as nvcc's intrinsics are never contracted).
inline float __fmul_rn(float a, float b) {
  float r = a * b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fadd_rn(float a, float b) {
  float r = a + b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
template <typename A, typename B>
std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
using std::isfinite;
using std::isinf;
using std::isnan;

// ---- math of the device's own library: inside kernels, glibc's results, or under
// CUDAEMU_PERTURB=1 results moved by up to CUDA's documented error (src/perturb.cpp); kernels call
// the C names --
namespace cudaemu {
bool perturb();  // CUDAEMU_PERTURB=1: the GPU's legal differences in rounding (perturb.cpp)
// The host's waits for the device so far (synchronising calls), and those of them that found work
// queued that they had to run: where a GPU might still have been busy, so that the host waited.
// For tests of how often a program waits (a training step: once).
unsigned long long host_waits();
unsigned long long blocking_host_waits();
void set_perturb(bool on);  // for the emulator's own tests
float device_expf(float x);
float device_logf(float x);
float device_erff(float x);
}  // namespace cudaemu
#define expf(x) ::cudaemu::device_expf(x)
#define logf(x) ::cudaemu::device_logf(x)
#define erff(x) ::cudaemu::device_erff(x)
