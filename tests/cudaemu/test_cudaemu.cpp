// The host emulation of CUDA (tests/cudaemu) against what a GPU does: barriers, shuffles and
// collectives give the values they give on a GPU; work waits in its stream until a
// synchronisation; bad launches fail as CUDA's do; and the bugs the emulation exists to catch
// (deadlocks, host reads of device memory, overruns, host pointers in kernels) stop the program
// with a message naming them.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/launch.cuh"

namespace {

#define CHECK_CUDA(call) ASSERT_EQ((call), cudaSuccess)

template <typename T>
T* device_copy(const std::vector<T>& host) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return d;
}
template <typename T>
std::vector<T> host_copy(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Each thread writes its slot, then reads its neighbour's: right only if no thread passes the
// barrier before all have written.
__global__ void rotate_kernel(int* out) {
  __shared__ int slots[256];
  const int t = int(threadIdx.x), n = int(blockDim.x);
  slots[t] = t * 10 + int(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * n + t] = slots[(t + 1) % n];
}

TEST(Cudaemu, SyncthreadsOrdersSharedMemory) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 3 * 256 * sizeof(int)));
  cudaemu::launch(rotate_kernel, dim3(3), dim3(256), 0, nullptr, d);
  CHECK_CUDA(cudaGetLastError());
  const std::vector<int> h = host_copy(d, 3 * 256);
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(h[size_t(b * 256 + t)], (t + 1) % 256 * 10 + b);
  CHECK_CUDA(cudaFree(d));
}

__global__ void warp_sum_kernel(float* out, const float* in, int n) {
  const int t = int(threadIdx.x);
  float v = t < n ? in[t] : 0.f;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const float first = __shfl_sync(0xffffffffu, v + float(t % 32), 0);
  const float down = __shfl_down_sync(0xffffffffu, float(t), 1);
  out[3 * t] = v;
  out[3 * t + 1] = first;
  out[3 * t + 2] = down;
}

TEST(Cudaemu, ShufflesExchangeWithinAWarp) {
  std::vector<float> in(64);
  std::iota(in.begin(), in.end(), 1.f);
  float* din = device_copy(in);
  float* dout = nullptr;
  CHECK_CUDA(cudaMalloc(&dout, 64 * 3 * sizeof(float)));
  cudaemu::launch(warp_sum_kernel, dim3(1), dim3(64), 0, nullptr, dout, din, 64);
  const std::vector<float> out = host_copy(dout, 64 * 3);
  for (int t = 0; t < 64; ++t) {
    const float sum = t < 32 ? 32 * 33 / 2 : 64 * 65 / 2 - 32 * 33 / 2;
    EXPECT_EQ(out[size_t(3 * t)], sum) << t;
    EXPECT_EQ(out[size_t(3 * t + 1)], sum + 0.f) << t;  // lane 0's value + 0
    // __shfl_down_sync: the last lane of each warp keeps its own value.
    EXPECT_EQ(out[size_t(3 * t + 2)], t % 32 == 31 ? float(t) : float(t + 1)) << t;
  }
  CHECK_CUDA(cudaFree(din));
  CHECK_CUDA(cudaFree(dout));
}

__global__ void scan_kernel(int* before, int* total, int* sum, const int* in) {
  using Scan = cub::BlockScan<int, 128>;
  using Reduce = cub::BlockReduce<int, 128>;
  __shared__ typename Scan::TempStorage scan_temp;
  __shared__ typename Reduce::TempStorage reduce_temp;
  const int t = int(threadIdx.x);
  int b, agg;
  Scan(scan_temp).ExclusiveSum(in[t], b, agg);
  before[t] = b;
  if (t == 0) total[0] = agg;
  const int s = Reduce(reduce_temp).Sum(in[t]);
  if (t == 0) sum[0] = s;
}

TEST(Cudaemu, BlockScanAndReduceCombineInThreadOrder) {
  std::vector<int> in(128);
  for (int i = 0; i < 128; ++i) in[size_t(i)] = (i * 7) % 5;
  int* din = device_copy(in);
  int *before = nullptr, *total = nullptr, *sum = nullptr;
  CHECK_CUDA(cudaMalloc(&before, 128 * sizeof(int)));
  CHECK_CUDA(cudaMalloc(&total, sizeof(int)));
  CHECK_CUDA(cudaMalloc(&sum, sizeof(int)));
  cudaemu::launch(scan_kernel, dim3(1), dim3(128), 0, nullptr, before, total, sum, din);
  const std::vector<int> b = host_copy(before, 128);
  int acc = 0;
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(b[size_t(i)], acc);
    acc += in[size_t(i)];
  }
  EXPECT_EQ(host_copy(total, 1)[0], acc);
  EXPECT_EQ(host_copy(sum, 1)[0], acc);
}

// Work waits in its stream: a pinned buffer holds the copy only after the synchronisation.
__global__ void fill_kernel(int* out, int v) { out[threadIdx.x] = v; }

TEST(Cudaemu, ResultsArriveAtTheSynchronisation) {
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int* d = nullptr;
  int* pinned = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 32 * sizeof(int)));
  CHECK_CUDA(cudaMallocHost(&pinned, 32 * sizeof(int)));
  cudaemu::launch(fill_kernel, dim3(1), dim3(32), 0, s, d, 7);
  CHECK_CUDA(cudaMemcpyAsync(pinned, d, 32 * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT_EQ(pinned[0], -1);  // not yet: the new pinned memory's 0xff bytes
  cudaEvent_t e;
  CHECK_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CHECK_CUDA(cudaEventRecord(e, s));
  cudaemu::launch(fill_kernel, dim3(1), dim3(32), 0, s, d, 9);  // after the event
  CHECK_CUDA(cudaEventSynchronize(e));
  EXPECT_EQ(pinned[31], 7);
  // A copy to pageable memory waits for the stream; one from it reads the source at the call.
  std::vector<int> host(32, 5);
  CHECK_CUDA(cudaMemcpyAsync(d, host.data(), 32 * sizeof(int), cudaMemcpyHostToDevice, s));
  host.assign(32, 6);
  std::vector<int> back(32);
  CHECK_CUDA(cudaMemcpyAsync(back.data(), d, 32 * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT_EQ(back[0], 5);
  CHECK_CUDA(cudaEventDestroy(e));
  CHECK_CUDA(cudaFreeHost(pinned));
  CHECK_CUDA(cudaFree(d));
  CHECK_CUDA(cudaStreamDestroy(s));
}

// Events as CUDA has them: a query of queued work is "not ready" (and runs nothing), elapsed time
// needs two recorded timing events.
TEST(Cudaemu, EventsFollowCudasRules) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 64 * sizeof(int)));
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t timed_start, timed_end, untimed;
  CHECK_CUDA(cudaEventCreate(&timed_start));
  CHECK_CUDA(cudaEventCreate(&timed_end));
  CHECK_CUDA(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));
  EXPECT_EQ(cudaEventQuery(untimed), cudaSuccess);  // never recorded: nothing to wait for
  float ms = -1.f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, timed_start, timed_end), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);  // and reset
  CHECK_CUDA(cudaEventRecord(timed_start, s));
  cudaemu::launch(fill_kernel, dim3(1), dim3(64), 0, s, d, 7);
  CHECK_CUDA(cudaEventRecord(timed_end, s));
  CHECK_CUDA(cudaEventRecord(untimed, s));
  EXPECT_EQ(cudaEventQuery(timed_end), cudaErrorNotReady);
  EXPECT_EQ(cudaEventElapsedTime(&ms, timed_start, timed_end), cudaErrorNotReady);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not ready is no error
  CHECK_CUDA(cudaEventSynchronize(timed_end));
  EXPECT_EQ(cudaEventQuery(timed_end), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, timed_start, timed_end), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, timed_start, untimed), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  EXPECT_EQ(host_copy(d, 64)[63], 7);
  cudaEventDestroy(timed_start);
  cudaEventDestroy(timed_end);
  cudaEventDestroy(untimed);
  cudaStreamDestroy(s);
}

// A synchronous copy waits for the legacy stream and the blocking streams, not for a
// non-blocking stream: a result made there is not yet in a cudaMemcpy's reach, as on a GPU.
TEST(Cudaemu, SynchronousCopiesDoNotWaitForNonBlockingStreams) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 64 * sizeof(int)));
  CHECK_CUDA(cudaMemset(d, 0, 64 * sizeof(int)));
  cudaStream_t blocking, non_blocking;
  CHECK_CUDA(cudaStreamCreate(&blocking));
  CHECK_CUDA(cudaStreamCreateWithFlags(&non_blocking, cudaStreamNonBlocking));
  cudaemu::launch(fill_kernel, dim3(1), dim3(64), 0, non_blocking, d, 5);
  EXPECT_EQ(host_copy(d, 64)[0], 0);  // not waited for: the fill is still queued
  cudaemu::launch(fill_kernel, dim3(1), dim3(64), 0, blocking, d, 6);
  EXPECT_EQ(host_copy(d, 64)[0], 6);  // a blocking stream's work is waited for
  CHECK_CUDA(cudaStreamSynchronize(non_blocking));
  EXPECT_EQ(host_copy(d, 64)[0], 5);  // the non-blocking stream's fill, run at its sync
  cudaStreamDestroy(blocking);
  cudaStreamDestroy(non_blocking);
}

TEST(Cudaemu, NewDeviceMemoryReadsAsNaN) {
  float* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 8 * sizeof(float)));
  EXPECT_TRUE(std::isnan(host_copy(d, 8)[3]));
  CHECK_CUDA(cudaMemset(d, 0, 8 * sizeof(float)));
  EXPECT_EQ(host_copy(d, 8)[7], 0.f);
  CHECK_CUDA(cudaFree(d));
}

TEST(Cudaemu, BadLaunchesFailAsCudasDo) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 32 * sizeof(int)));
  cudaemu::launch(fill_kernel, dim3(1), dim3(2048), 0, nullptr, d, 1);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once
  cudaemu::launch(fill_kernel, dim3(0), dim3(32), 0, nullptr, d, 1);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  cudaemu::launch(fill_kernel, dim3(1), dim3(32), 64 * 1024, nullptr, d, 1);
  EXPECT_NE(cudaGetLastError(), cudaSuccess);  // over 48 KB without the kernel's opt-in
  CHECK_CUDA(
      cudaFuncSetAttribute(fill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  cudaemu::launch(fill_kernel, dim3(1), dim3(32), 64 * 1024, nullptr, d, 1);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(
      cudaFuncSetAttribute(fill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
      cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  // The shared-memory carveout is a percentage, or -1 for none.
  CHECK_CUDA(
      cudaFuncSetAttribute(fill_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  EXPECT_EQ(cudaFuncSetAttribute(fill_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 101),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  CHECK_CUDA(cudaFree(d));
}

// A launch CUDA refuses fails in cuda::launch with one line naming the kernel (cudaFuncGetName,
// from the symbol table here) and what it allows (cudaFuncGetAttributes).
TEST(Cudaemu, ARefusedLaunchNamesItsKernelAndWhatItAllows) {
  const char* name = nullptr;
  CHECK_CUDA(cudaFuncGetName(&name, reinterpret_cast<const void*>(fill_kernel)));
  ASSERT_NE(name, nullptr);
  EXPECT_NE(std::string(name).find("fill_kernel"), std::string::npos) << name;
  cudaFuncAttributes attr{};
  CHECK_CUDA(cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(fill_kernel)));
  EXPECT_EQ(attr.maxThreadsPerBlock, 1024);
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 32 * sizeof(int)));
  try {
    ecmoe::cuda::launch(fill_kernel, dim3(3), dim3(2048), 0, nullptr, d, 1);
    ADD_FAILURE() << "a block of 2048 threads was launched";
  } catch (const ecmoe::Error& e) {
    const std::string what = e.what();
    for (const char* part :
         {"cudaErrorInvalidConfiguration", "launching kernel", "fill_kernel(int*, int)",
          "grid (3,1,1)", "= 2048 threads", "allows 1024 threads a block"})
      EXPECT_NE(what.find(part), std::string::npos) << part << " not in: " << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the error is reported once
  CHECK_CUDA(cudaFree(d));
}

// CUDAEMU_LAUNCH_LOG: at exit, a line per kernel with the largest block and dynamic shared memory
// it was launched with (scripts/check_cuda_launches.py's input).
TEST(CudaemuDeathTest, TheLaunchLogNamesEachKernelsLargestLaunch) {
  const std::string log = ::testing::TempDir() + "cudaemu_launch_log.tsv";
  std::remove(log.c_str());
  ::setenv("CUDAEMU_LAUNCH_LOG", log.c_str(), 1);
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the log is read at start
  EXPECT_EXIT(
      {
        int* d = nullptr;
        cudaMalloc(&d, 64 * sizeof(int));
        cudaemu::launch(fill_kernel, dim3(1), dim3(32), 0, nullptr, d, 1);
        cudaemu::launch(fill_kernel, dim3(2), dim3(64), 128, nullptr, d, 2);
        cudaDeviceSynchronize();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  ::unsetenv("CUDAEMU_LAUNCH_LOG");
  std::FILE* f = std::fopen(log.c_str(), "r");
  ASSERT_NE(f, nullptr) << log;
  char module[4096];
  unsigned long long offset = 0, threads = 0, shared = 0, launches = 0;
  ASSERT_EQ(std::fscanf(f, "%4095[^\t]\t%llx\t%llu\t%llu\t%llu", module, &offset, &threads, &shared,
                        &launches),
            5);
  std::fclose(f);
  std::remove(log.c_str());
  EXPECT_EQ(threads, 64u);
  EXPECT_EQ(shared, 128u);
  EXPECT_EQ(launches, 2u);
  // The offset is fill_kernel's within the module that holds it.
  Dl_info info{};
  ASSERT_NE(::dladdr(reinterpret_cast<const void*>(fill_kernel), &info), 0);
  EXPECT_STREQ(module, info.dli_fname);
  EXPECT_EQ(offset,
            reinterpret_cast<uintptr_t>(fill_kernel) - reinterpret_cast<uintptr_t>(info.dli_fbase));
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x == 0)
    __syncwarp();
  else
    __syncthreads();
  out[threadIdx.x] = 1;
}

using CudaemuDeathTest = ::testing::Test;

TEST(CudaemuDeathTest, DivergentBarriersAreADeadlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* d = nullptr;
        cudaMalloc(&d, 32 * sizeof(int));
        cudaemu::launch(divergent_barrier_kernel, dim3(1), dim3(32), 0, nullptr, d);
        cudaDeviceSynchronize();
      },
      "deadlock in kernel launch #[0-9]+, block \\(0,0,0\\): 31 threads wait at __syncthreads");
}

// A shuffle from a lane that does not exist (a block of 48 threads: its second warp has 16) is
// undefined on a GPU: 0xff bytes (NaN) here.
TEST(Cudaemu, ShufflesFromMissingLanesGiveNaN) {
  float* din = nullptr;
  float* dout = nullptr;
  CHECK_CUDA(cudaMalloc(&din, 48 * sizeof(float)));
  CHECK_CUDA(cudaMemset(din, 0, 48 * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dout, 48 * 3 * sizeof(float)));
  cudaemu::launch(warp_sum_kernel, dim3(1), dim3(48), 0, nullptr, dout, din, 48);
  const std::vector<float> out = host_copy(dout, 48 * 3);
  EXPECT_EQ(out[0], 0.f);                // warp 0 is whole
  EXPECT_TRUE(std::isnan(out[3 * 40]));  // lane 8 of warp 1 read lane 24
}

// Shared memory holds 0xff bytes at every block start: a read of what the block did not write.
__global__ void unwritten_shared_kernel(int* out) {
  __shared__ int counter;
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
  __syncthreads();
  counter = 5;
}

TEST(Cudaemu, SharedMemoryStartsAsGarbageInEveryBlock) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 3 * sizeof(int)));
  cudaemu::launch(unwritten_shared_kernel, dim3(3), dim3(32), 0, nullptr, d);
  EXPECT_EQ(host_copy(d, 3), (std::vector<int>{-1, -1, -1}));
}

__global__ void reduce_in_every_thread_kernel(int* out) {
  using Reduce = cub::BlockReduce<int, 64>;
  __shared__ typename Reduce::TempStorage temp;
  out[threadIdx.x] = Reduce(temp).Sum(1);
}

TEST(Cudaemu, BlockReduceDefinesOnlyThreadZerosResult) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 64 * sizeof(int)));
  cudaemu::launch(reduce_in_every_thread_kernel, dim3(1), dim3(64), 0, nullptr, d);
  const std::vector<int> h = host_copy(d, 64);
  EXPECT_EQ(h[0], 64);
  EXPECT_EQ(h[1], -1);
  EXPECT_EQ(h[63], -1);
}

TEST(CudaemuDeathTest, ACollectiveMustKnowItsBlockSize) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* d = nullptr;
        cudaMalloc(&d, 64 * sizeof(int));
        cudaemu::launch(reduce_in_every_thread_kernel, dim3(1), dim3(32), 0, nullptr, d);
        cudaDeviceSynchronize();
      },
      "BlockReduce<T, 64> in a block of 32 threads");
}

// Two scans through one TempStorage: CUB needs a __syncthreads between them (the last threads of
// the first may still read the storage when the first of the second write it).
__global__ void reused_storage_kernel(int* out, bool barrier) {
  using Scan = cub::BlockScan<int, 64>;
  __shared__ typename Scan::TempStorage temp;
  int a, b;
  Scan(temp).ExclusiveSum(1, a);
  if (barrier) __syncthreads();
  Scan(temp).ExclusiveSum(a, b);
  out[threadIdx.x] = b;
}

TEST(Cudaemu, ATempStorageIsReusedAfterABarrier) {
  int* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, 64 * sizeof(int)));
  cudaemu::launch(reused_storage_kernel, dim3(2), dim3(64), 0, nullptr, d, true);
  const std::vector<int> h = host_copy(d, 64);
  EXPECT_EQ(h[0], 0);
  EXPECT_EQ(h[63], 62 * 63 / 2);  // the sum of 0..62
}

TEST(CudaemuDeathTest, ATempStorageReusedWithoutABarrierStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* d = nullptr;
        cudaMalloc(&d, 64 * sizeof(int));
        cudaemu::launch(reused_storage_kernel, dim3(1), dim3(64), 0, nullptr, d, false);
        cudaDeviceSynchronize();
      },
      "BlockScan reuses a TempStorage with no __syncthreads\\(\\) since its last collective");
}

__global__ void lane_outside_mask_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, int(threadIdx.x), 0);  // only lane 0 is a member
}

TEST(CudaemuDeathTest, AShuffleMustNameItsCaller) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* d = nullptr;
        cudaMalloc(&d, 32 * sizeof(int));
        cudaemu::launch(lane_outside_mask_kernel, dim3(1), dim3(32), 0, nullptr, d);
        cudaDeviceSynchronize();
      },
      "__shfl_sync with a mask that leaves out the calling lane 1");
}

__global__ void off_by_one_kernel(int* out, int n) { out[n] = 1; }

TEST(CudaemuDeathTest, WritesIntoTheRoundUpAreNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* d = nullptr;
        cudaMalloc(&d, 100 * sizeof(int));
        cudaemu::launch(off_by_one_kernel, dim3(1), dim3(1), 0, nullptr, d, 100);
        cudaDeviceSynchronize();
      },
      "kernel launch #1 wrote up to 4 bytes past the end of a 400-byte device allocation");
}

__global__ void shared_overrun_kernel(float* out, int n) {
  float* s = reinterpret_cast<float*>(cudaemu::dynamic_shared_memory());
  s[n + threadIdx.x * 1024] = 1.f;
  out[threadIdx.x] = s[0];
}

TEST(CudaemuDeathTest, DynamicSharedMemoryEndsAtAGuardPage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(&d, 32 * sizeof(float));
        cudaemu::launch(shared_overrun_kernel, dim3(1), dim3(32), 1024 * sizeof(float), nullptr, d,
                        1024);
        cudaDeviceSynchronize();
      },
      "outside the block's 4096 bytes of dynamic shared memory");
}

__global__ void misaligned_wmma_kernel(float* c, const __nv_bfloat16* a) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + 1, 16);  // 2 bytes off a 32-byte boundary
  c[threadIdx.x] = 0.f;
}

TEST(CudaemuDeathTest, WmmaNeedsAlignedMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* c = nullptr;
        __nv_bfloat16* a = nullptr;
        cudaMalloc(&c, 32 * sizeof(float));
        cudaMalloc(&a, 512 * sizeof(__nv_bfloat16));
        cudaemu::launch(misaligned_wmma_kernel, dim3(1), dim3(32), 0, nullptr, c, a);
        cudaDeviceSynchronize();
      },
      "CUDA needs a 32-byte aligned pointer and ldm a multiple of 16 bytes");
}

// Every thread writes the same word: the last to run wins, which on a GPU varies run to run.
__global__ void racy_kernel(int* out) { out[0] = int(threadIdx.x + blockIdx.x * blockDim.x); }

TEST(CudaemuDeathTest, TheOrderCheckFindsRaces) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        setenv("CUDAEMU_ORDER_CHECK", "1", 1);
        int* d = nullptr;
        cudaMalloc(&d, 128 * sizeof(int));
        cudaemu::launch(rotate_kernel, dim3(2), dim3(64), 0, nullptr, d);  // no race: passes
        cudaemu::launch(racy_kernel, dim3(2), dim3(64), 0, nullptr, d);
        cudaDeviceSynchronize();
      },
      "kernel launch #2 writes other bytes when its blocks and threads run in reverse order");
}

__global__ void overrun_kernel(float* out, int n) { out[n + 64 + threadIdx.x] = 1.f; }

TEST(CudaemuDeathTest, OverrunsFaultInTheKernel) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(&d, 1024 * sizeof(float));
        cudaemu::launch(overrun_kernel, dim3(1), dim3(32), 0, nullptr, d, 1024);
        cudaDeviceSynchronize();
      },
      "past the end of a 4096-byte allocation.* in kernel launch #[0-9]+, block \\(0,0,0\\)");
}

TEST(CudaemuDeathTest, HostCodeCannotReadDeviceMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(&d, 16 * sizeof(float));
        volatile float x = d[3];
        (void)x;
      },
      "device memory read or written by host code");
}

TEST(CudaemuDeathTest, KernelsCannotReadPageableHostMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<int> host(32);
        cudaemu::launch(fill_kernel, dim3(1), dim3(32), 0, nullptr, host.data(), 1);
      },
      "argument 0 of a launch of kernel .* host memory a GPU cannot read");
}

TEST(Cudaemu, RadixSortsAreStableInCubsOrder) {
  const std::vector<float> keys = {0.5f, -1.f, 0.f, -0.f, 2.f, 0.5f, -1.f, 0.f, 3.f, -2.f};
  const int n = int(keys.size());
  std::vector<int> values(keys.size());
  std::iota(values.begin(), values.end(), 0);
  float* dk = device_copy(keys);
  int* dv = device_copy(values);
  float* dk_out = nullptr;
  int* dv_out = nullptr;
  CHECK_CUDA(cudaMalloc(&dk_out, keys.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dv_out, keys.size() * sizeof(int)));
  size_t temp_bytes = 0;
  CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, dk, dk_out, dv, dv_out, n));
  void* temp = nullptr;
  CHECK_CUDA(cudaMalloc(&temp, temp_bytes));
  CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, dk, dk_out, dv, dv_out, n));
  // -0.0 equals +0.0: the two zeros keep their order (2, 3, 7).
  EXPECT_EQ(host_copy(dv_out, size_t(n)), (std::vector<int>{9, 1, 6, 2, 3, 7, 0, 5, 4, 8}));
  // Descending within two segments [0, 4) and [4, 10).
  const std::vector<int> offsets = {0, 4, 10};
  int* doff = device_copy(offsets);
  CHECK_CUDA(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      temp, temp_bytes, dk, dk_out, dv, dv_out, n, 2, doff, doff + 1, 0, 32, nullptr));
  EXPECT_EQ(host_copy(dv_out, size_t(n)), (std::vector<int>{0, 2, 3, 1, 8, 4, 5, 7, 6, 9}));
  // Integer keys, only bits [0, 3): 9 sorts as 1.
  const std::vector<int> ikeys = {9, 2, 1, 0, 3};
  int* dik = device_copy(ikeys);
  int* dik_out = nullptr;
  CHECK_CUDA(cudaMalloc(&dik_out, ikeys.size() * sizeof(int)));
  CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, dik, dik_out, dv, dv_out, 5, 0, 3));
  EXPECT_EQ(host_copy(dv_out, 5), (std::vector<int>{3, 0, 2, 1, 4}));
  EXPECT_EQ(cub::DeviceRadixSort::SortPairs(temp, temp_bytes = 8, dk, dk_out, dv, dv_out, n),
            cudaErrorInvalidValue);  // too little temporary storage
}

TEST(CudaemuDeathTest, RadixSortsAreNotInPlace) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        int* k = nullptr;
        int* v = nullptr;
        void* temp = nullptr;
        cudaMalloc(&k, 64 * sizeof(int));
        cudaMalloc(&v, 64 * sizeof(int));
        size_t temp_bytes = 0;
        cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, k, k, v, v, 64);
        cudaMalloc(&temp, temp_bytes);
        cub::DeviceRadixSort::SortPairs(temp, temp_bytes, k, k, v, v, 64);
      },
      "a CUB radix sort's output overlaps an input");
}

// C = alpha·op(A)·op(B) + beta·C against a double loop, column-major, every transpose.
TEST(Cudaemu, GemmMatchesAReference) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int m = 13, n = 7, k = 19;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n);
  for (float& x : a) x = normal(gen);
  for (float& x : b) x = normal(gen);
  for (float& x : c) x = normal(gen);
  float *da = device_copy(a), *db = device_copy(b), *dc = nullptr;
  CHECK_CUDA(cudaMalloc(&dc, c.size() * sizeof(float)));
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int lda = ta ? k : m, ldb = tb ? n : k;
      const float alpha = 0.5f, beta = ta + tb == 1 ? 0.f : 2.f;
      if (beta == 0.f)
        CHECK_CUDA(cudaMemset(dc, 0xff, c.size() * sizeof(float)));  // NaN, never read
      else
        CHECK_CUDA(cudaMemcpy(dc, c.data(), c.size() * sizeof(float), cudaMemcpyHostToDevice));
      ASSERT_EQ(cublasGemmEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m,
                             n, k, &alpha, da, CUDA_R_32F, lda, db, CUDA_R_32F, ldb, &beta, dc,
                             CUDA_R_32F, m, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
                CUBLAS_STATUS_SUCCESS);
      const std::vector<float> got = host_copy(dc, c.size());
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int l = 0; l < k; ++l)
            s += double(ta ? a[size_t(l + i * lda)] : a[size_t(i + l * lda)]) *
                 double(tb ? b[size_t(j + l * ldb)] : b[size_t(l + j * ldb)]);
          const double want = alpha * s + (beta != 0.f ? beta * double(c[size_t(i + j * m)]) : 0.);
          EXPECT_NEAR(got[size_t(i + j * m)], want, 1e-5 * (1 + std::abs(want))) << ta << tb;
        }
    }
  const float one = 1.f, zero = 0.f;
  __nv_bfloat16* d16 = nullptr;
  CHECK_CUDA(cudaMalloc(&d16, c.size() * sizeof(__nv_bfloat16)));
  EXPECT_EQ(
      cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, CUDA_R_32F, m, db, CUDA_R_32F, k,
                   &zero, d16, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      CUBLAS_STATUS_NOT_SUPPORTED);  // fp32 operands, bf16 output: not in GemmEx's table
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, CUDA_R_32F, m - 1, db,
                         CUDA_R_32F, k, &zero, dc, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  cublasDestroy(h);
}

// cuBLASLt's descriptor attribute `attribute` = value (its size the value's).
template <typename T>
cublasStatus_t set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                   const T& value) {
  return cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value);
}

// cuBLASLt's matmul with the bias epilogue: D = alpha·op(A)·op(B) + beta·C + bias (one element
// per row of D), D apart from C, against a double loop; what the emulation does not run has no
// algorithm; a pointer aligned less than its algorithm was chosen for stops the program.
TEST(Cudaemu, LtMatmulWithBiasMatchesAReference) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  const int m = 11, n = 6, k = 9;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n), bias(m);
  for (auto* v : {&a, &b, &c, &bias})
    for (float& x : *v) x = normal(gen);
  float *da = device_copy(a), *db = device_copy(b), *dc = device_copy(c),
        *dbias = device_copy(bias);
  float* dd = nullptr;
  CHECK_CUDA(cudaMalloc(&dd, c.size() * sizeof(float)));
  cublasLtMatmulDesc_t desc = nullptr;
  ASSERT_EQ(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  const int32_t trans = CUBLAS_OP_T;  // op(A) = Aᵀ: A stored [k, m]
  const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  const void* bias_pointer = dbias;
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_TRANSA, trans), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_pointer), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &trans, 2),
            CUBLAS_STATUS_INVALID_VALUE);  // the wrong size
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, k, m, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, m), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulPreference_t pref = nullptr;
  ASSERT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &result, &found),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(found, 1);
  const float alpha = 0.5f, beta = 2.f;
  ASSERT_EQ(cublasLtMatmul(lt, desc, &alpha, da, la, db, lb, &beta, dc, lc, dd, lc, &result.algo,
                           nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  const std::vector<float> got = host_copy(dd, c.size());
  EXPECT_EQ(host_copy(dc, c.size()), c);  // C is read, not written
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int l = 0; l < k; ++l) s += double(a[size_t(l + i * k)]) * b[size_t(l + j * k)];
      const double want = alpha * s + beta * double(c[size_t(i + j * m)]) + bias[size_t(i)];
      EXPECT_NEAR(got[size_t(i + j * m)], want, 1e-5 * (1 + std::abs(want)));
    }
  // bf16 operands with a bf16 D (and C, unread at beta 0): the fp32 result rounded once. A bf16 D
  // takes bf16 operands and a C of its own type.
  std::vector<__nv_bfloat16> a16(a.begin(), a.end()), b16(b.begin(), b.end());
  __nv_bfloat16 *da16 = device_copy(a16), *db16 = device_copy(b16), *dd16 = nullptr;
  CHECK_CUDA(cudaMalloc(&dd16, c.size() * sizeof(__nv_bfloat16)));
  cublasLtMatrixLayout_t la16 = nullptr, lb16 = nullptr, lc16 = nullptr;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&la16, CUDA_R_16BF, k, m, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lb16, CUDA_R_16BF, k, n, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lc16, CUDA_R_16BF, m, n, m), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(
      cublasLtMatmulAlgoGetHeuristic(lt, desc, la16, lb16, lc16, lc16, pref, 1, &result, &found),
      CUBLAS_STATUS_SUCCESS);
  const float zero = 0.f;
  ASSERT_EQ(cublasLtMatmul(lt, desc, &alpha, da16, la16, db16, lb16, &zero, dd16, lc16, dd16, lc16,
                           &result.algo, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la16, lb16, lc, lc, pref, 1, &result, &found),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmul(lt, desc, &alpha, da16, la16, db16, lb16, &zero, dd, lc, dd, lc,
                           &result.algo, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  {
    const std::vector<float> wide = host_copy(dd, c.size());
    const std::vector<__nv_bfloat16> narrow = host_copy(dd16, c.size());
    for (size_t i = 0; i < c.size(); ++i)
      EXPECT_EQ(narrow[i].__x, __nv_bfloat16(wide[i]).__x) << "element " << i;
  }
  EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc16, lc16, pref, 1, &result, &found),
            CUBLAS_STATUS_NOT_SUPPORTED);  // fp32 operands, bf16 D
  EXPECT_EQ(
      cublasLtMatmulAlgoGetHeuristic(lt, desc, la16, lb16, lc, lc16, pref, 1, &result, &found),
      CUBLAS_STATUS_NOT_SUPPORTED);  // C and D of two types
  for (cublasLtMatrixLayout_t l : {la16, lb16, lc16}) cublasLtMatrixLayoutDestroy(l);
  // No algorithm for what is not emulated: a ReLU epilogue, an integer bias.
  const uint32_t relu = 2;
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, relu), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &result, &found),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(found, 0);
  const int32_t int_type = 10;  // CUDA_R_32I
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int_type), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &result, &found),
            CUBLAS_STATUS_NOT_SUPPORTED);
  // An algorithm chosen for 256-byte alignment (the default) refuses an A 4 bytes in.
  const int32_t fp32 = CUDA_R_32F;
  ASSERT_EQ(set(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, fp32), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &result, &found),
            CUBLAS_STATUS_SUCCESS);
  float* shifted = nullptr;
  CHECK_CUDA(cudaMalloc(&shifted, (a.size() + 1) * sizeof(float)));
  EXPECT_DEATH(cublasLtMatmul(lt, desc, &alpha, shifted + 1, la, db, lb, &beta, dc, lc, dd, lc,
                              &result.algo, nullptr, 0, nullptr),
               "operand A is aligned to 4 bytes, its algorithm to 256");
  cublasLtMatmulPreferenceDestroy(pref);
  for (cublasLtMatrixLayout_t l : {la, lb, lc}) cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(lt);
}

__global__ void math_kernel(float* out, const float* in, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) {
    out[3 * i] = expf(in[i]);
    out[3 * i + 1] = logf(in[i]);
    out[3 * i + 2] = erff(in[i]);
  }
}

// How many representable floats lie between a and b.
int64_t ulps_apart(float a, float b) {
  const auto ordered = [](float x) {
    const int32_t i = __float_as_int(x);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  return std::abs(ordered(a) - ordered(b));
}

TEST(Cudaemu, PerturbedMathStaysWithinCudasErrors) {
  const int n = 4096;
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[size_t(i)] = 0.01f + 0.0037f * float(i);  // (0, 15]
  float* din = device_copy(in);
  float* dout = nullptr;
  CHECK_CUDA(cudaMalloc(&dout, 3 * n * sizeof(float)));
  const bool before = cudaemu::perturb();  // CUDAEMU_PERTURB's, restored at the end
  const auto run = [&](bool perturbed) {
    cudaemu::set_perturb(perturbed);
    cudaemu::launch(math_kernel, dim3(n / 256), dim3(256), 0, nullptr, dout, din, n);
    return host_copy(dout, 3 * size_t(n));
  };
  const std::vector<float> exact = run(false), moved = run(true), again = run(true);
  EXPECT_EQ(moved, again);                // a hash of the argument decides: runs repeat
  const int64_t max_ulps[3] = {2, 1, 2};  // expf, logf, erff: CUDA's documented errors
  int differ[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) {
    const float host[3] = {std::exp(in[size_t(i)]), std::log(in[size_t(i)]),
                           std::erf(in[size_t(i)])};
    for (int f = 0; f < 3; ++f) {
      const size_t at = 3 * size_t(i) + size_t(f);
      EXPECT_EQ(exact[at], host[f]) << "function " << f << " at " << in[size_t(i)];
      EXPECT_LE(ulps_apart(moved[at], exact[at]), max_ulps[f]) << f;
      EXPECT_LE(std::abs(moved[at]), f == 2 ? 1.f : INFINITY);
      differ[f] += moved[at] != exact[at];
    }
  }
  for (int f = 0; f < 3; ++f) EXPECT_GT(differ[f], n / 4) << "function " << f;
  cudaemu::set_perturb(true);
  EXPECT_EQ(expf(1.5f), std::exp(1.5f));  // on the host, glibc's own
  cudaemu::set_perturb(before);
}

TEST(Cudaemu, PerturbedGemmSumsInAnotherOrder) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int m = 16, n = 16, k = 200;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal;
  std::vector<float> a(size_t(m) * k), b(size_t(k) * n);
  for (float& x : a) x = normal(gen);
  for (float& x : b) x = normal(gen);
  float *da = device_copy(a), *db = device_copy(b), *dc = nullptr;
  CHECK_CUDA(cudaMalloc(&dc, size_t(m) * n * sizeof(float)));
  const bool before = cudaemu::perturb();
  const auto run = [&](bool perturbed) {
    cudaemu::set_perturb(perturbed);
    const float one = 1.f, zero = 0.f;
    EXPECT_EQ(
        cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, CUDA_R_32F, m, db, CUDA_R_32F,
                     k, &zero, dc, CUDA_R_32F, m, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
        CUBLAS_STATUS_SUCCESS);
    return host_copy(dc, size_t(m) * n);
  };
  const std::vector<float> plain = run(false), moved = run(true);
  cudaemu::set_perturb(before);
  int differ = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_NEAR(moved[i], plain[i], 1e-5 * std::sqrt(double(k)) * (1 + std::abs(plain[i])));
    differ += moved[i] != plain[i];
  }
  EXPECT_GT(differ, int(plain.size()) / 4);  // the order shows in the last bits
  cublasDestroy(h);
}

__global__ void wmma_kernel(float* c, const __nv_bfloat16* a, const __nv_bfloat16* b) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

TEST(Cudaemu, WmmaMultipliesTiles) {
  std::vector<__nv_bfloat16> a(256), b(256);
  for (int i = 0; i < 256; ++i) {
    a[size_t(i)] = __nv_bfloat16(float(i % 7) - 3.f);
    b[size_t(i)] = __nv_bfloat16(float(i % 5) * 0.5f);
  }
  auto* da = device_copy(a);
  auto* db = device_copy(b);
  float* dc = nullptr;
  CHECK_CUDA(cudaMalloc(&dc, 256 * sizeof(float)));
  cudaemu::launch(wmma_kernel, dim3(1), dim3(32), 0, nullptr, dc, da, db);
  const std::vector<float> c = host_copy(dc, 256);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = 1.f;  // b is column-major: element (l, j) at b[j·16 + l]
      for (int l = 0; l < 16; ++l) s += float(a[size_t(i * 16 + l)]) * float(b[size_t(j * 16 + l)]);
      EXPECT_EQ(c[size_t(i * 16 + j)], s);
    }
}

// One mma.m16n8k16 with its registers gathered by the PTX ISA's tables (written out here, apart
// from the emulator's): a [16, 16] and b [16, 8] bf16 row-major, d [16, 8] fp32 row-major in and
// out.
__global__ void mma_m16n8k16_kernel(float* d, const uint16_t* a, const uint16_t* b) {
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  const auto pair = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | uint32_t(hi) << 16; };
  const uint32_t ra[4] = {pair(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                          pair(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                          pair(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                          pair(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t rb[2] = {pair(b[2 * t * 8 + g], b[(2 * t + 1) * 8 + g]),
                          pair(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
  float rd[4] = {d[g * 8 + 2 * t], d[g * 8 + 2 * t + 1], d[(g + 8) * 8 + 2 * t],
                 d[(g + 8) * 8 + 2 * t + 1]};
  cudaemu::mma_m16n8k16_bf16(rd, ra, rb);
  d[g * 8 + 2 * t] = rd[0];
  d[g * 8 + 2 * t + 1] = rd[1];
  d[(g + 8) * 8 + 2 * t] = rd[2];
  d[(g + 8) * 8 + 2 * t + 1] = rd[3];
}

TEST(Cudaemu, MmaM16n8k16MultipliesTheRegistersAsPtxLaysThemOut) {
  std::vector<uint16_t> a(256), b(128);
  std::vector<float> c(128);
  // Small integers and halves: exact in bf16, and every sum exact in fp32, so any order of the
  // sums gives the same result.
  for (int i = 0; i < 256; ++i)
    a[size_t(i)] = uint16_t(cudaemu::to_bits(float(i % 11) - 5.f) >> 16);
  for (int i = 0; i < 128; ++i) {
    b[size_t(i)] = uint16_t(cudaemu::to_bits(float(i % 7) * 0.5f - 1.f) >> 16);
    c[size_t(i)] = float(i);
  }
  auto* da = device_copy(a);
  auto* db = device_copy(b);
  auto* dd = device_copy(c);
  cudaemu::launch(mma_m16n8k16_kernel, dim3(1), dim3(32), 0, nullptr, dd, da, db);
  const std::vector<float> d = host_copy(dd, 128);
  const auto widen = [](uint16_t x) { return cudaemu::from_bits<float>(uint64_t(x) << 16); };
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      float s = c[size_t(i * 8 + j)];
      for (int l = 0; l < 16; ++l) s += widen(a[size_t(i * 16 + l)]) * widen(b[size_t(l * 8 + j)]);
      EXPECT_EQ(d[size_t(i * 8 + j)], s) << "row " << i << ", column " << j;
    }
}

// ldmatrix.x4.trans from a [32, 8] tile of 16-bit values (row-major, 16-byte rows) in shared
// memory: lane 8i + r names row r of matrix i (rows [8i, 8i + 8) of the tile); out[lane·4 + i] is
// lane's register i.
__global__ void ldmatrix_kernel(uint32_t* out, const uint16_t* tile, int row_offset_bytes) {
  __shared__ uint16_t rows[32 * 8 + 8];
  for (int i = int(threadIdx.x); i < 32 * 8; i += 32) rows[i + row_offset_bytes / 2] = tile[i];
  __syncwarp();
  uint32_t r[4];
  cudaemu::ldmatrix_x4_trans(r, rows + row_offset_bytes / 2 + threadIdx.x * 8);
  for (int i = 0; i < 4; ++i) out[threadIdx.x * 4 + i] = r[i];
}

TEST(Cudaemu, LdmatrixTransHandsEachLaneTwoElementsOfAColumn) {
  std::vector<uint16_t> tile(32 * 8);
  for (int i = 0; i < 32 * 8; ++i)
    tile[size_t(i)] = uint16_t(i);  // element (row, col) = 8·row + col
  auto* d_tile = device_copy(tile);
  uint32_t* d_out = nullptr;
  CHECK_CUDA(cudaMalloc(&d_out, 128 * sizeof(uint32_t)));
  cudaemu::launch(ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr, d_out, d_tile, 0);
  const std::vector<uint32_t> out = host_copy(d_out, 128);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      // PTX: with .trans, lane l holds elements (2(l % 4), l / 4) and (2(l % 4) + 1, l / 4) of
      // matrix i, the low half first.
      const int row = 8 * i + 2 * (lane % 4), col = lane / 4;
      const uint32_t want = uint32_t(8 * row + col) | uint32_t(8 * (row + 1) + col) << 16;
      EXPECT_EQ(out[size_t(lane * 4 + i)], want) << "lane " << lane << ", matrix " << i;
    }
}

TEST(CudaemuDeathTest, LdmatrixNeedsSixteenByteAlignedRows) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<uint16_t> tile(32 * 8, 0);
        auto* d_tile = device_copy(tile);
        uint32_t* d_out = nullptr;
        cudaMalloc(&d_out, 128 * sizeof(uint32_t));
        cudaemu::launch(ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr, d_out, d_tile, 4);
        cudaDeviceSynchronize();
      },
      "ldmatrix: lane [0-9]+'s row address is not 16 bytes of shared memory at a 16-byte boundary");
}

// cp.async: thread 0 copies two 16-byte groups into shared memory and reads them back before any
// wait, after waiting for all but the newest group, and after waiting for all.
__global__ void cp_async_kernel(int* out, const int* src, int misalign) {
  __shared__ int box[8];
  if (threadIdx.x != 0) return;
  cudaemu::cp_async(box + misalign, src, 16);
  cudaemu::cp_async_commit();
  cudaemu::cp_async(box + 4, src + 4, 16);
  cudaemu::cp_async_commit();
  for (int i = 0; i < 8; ++i) out[i] = box[i];  // nothing waited for yet
  cudaemu::cp_async_wait(1);
  for (int i = 0; i < 8; ++i) out[8 + i] = box[i];  // the first group only
  cudaemu::cp_async_wait(0);
  for (int i = 0; i < 8; ++i) out[16 + i] = box[i];
}

TEST(Cudaemu, CpAsyncLandsOnlyWhenAWaitCompletesItsGroup) {
  const std::vector<int> src = {1, 2, 3, 4, 5, 6, 7, 8};
  int* d_src = device_copy(src);
  int* d_out = nullptr;
  CHECK_CUDA(cudaMalloc(&d_out, 24 * sizeof(int)));
  cudaemu::launch(cp_async_kernel, dim3(1), dim3(32), 0, nullptr, d_out, d_src, 0);
  const std::vector<int> out = host_copy(d_out, 24);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(out[size_t(i)], -1) << i;  // shared memory's 0xff bytes: the copies are pending
    EXPECT_EQ(out[size_t(8 + i)], i < 4 ? i + 1 : -1) << i;
    EXPECT_EQ(out[size_t(16 + i)], i + 1) << i;
  }
}

TEST(CudaemuDeathTest, CpAsyncNeedsSixteenByteAlignedShared) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        const std::vector<int> src(8, 0);
        int* d_src = device_copy(src);
        int* d_out = nullptr;
        cudaMalloc(&d_out, 24 * sizeof(int));
        cudaemu::launch(cp_async_kernel, dim3(1), dim3(32), 0, nullptr, d_out, d_src, 1);
        cudaDeviceSynchronize();
      },
      "cp.async.cg: a copy of 16 bytes that is not 16 bytes of device memory to 16 bytes of "
      "shared memory");
}

__global__ void half_warp_mma_kernel(float* d) {
  float rd[4] = {0.f, 0.f, 0.f, 0.f};
  const uint32_t ra[4] = {0u, 0u, 0u, 0u}, rb[2] = {0u, 0u};
  cudaemu::mma_m16n8k16_bf16(rd, ra, rb);
  d[threadIdx.x] = rd[0];
}

TEST(CudaemuDeathTest, MmaM16n8k16NeedsEveryLaneOfItsWarp) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(&d, 16 * sizeof(float));
        cudaemu::launch(half_warp_mma_kernel, dim3(1), dim3(16), 0, nullptr, d);
        cudaDeviceSynchronize();
      },
      "mma.sync.m16n8k16 in a warp of 16 live lanes");
}

}  // namespace
