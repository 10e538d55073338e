// cudaemu's internals, shared by its runtime files: memory, stream queues, the kernel scheduler
// and its diagnostics.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace cudaemu {

// ---- memory.cpp: device allocations sit at the end of their pages, before a guard page, filled
// with 0xff bytes (NaN as fp32); outside queued work their pages are closed to the host ---------
void* device_alloc(size_t bytes);  // nullptr when out of memory
bool device_free(void* p);         // false: not a live device allocation
void* pinned_alloc(size_t bytes);
bool pinned_free(void* p);
bool is_pinned(const void* p);
bool is_device(const void* p);
bool same_allocation(const void* a, const void* b);  // both inside (or one past) one allocation
// Opens the device allocations' pages to the host (the emulated GPU's work runs) or closes them.
void open_device_memory();
// Every allocation's slack still 0xff; else stops the program naming `what` (the queued work).
void check_slack(const std::string& what);
void close_device_memory();
// Every live allocation's data (device and pinned): what a kernel may write.
std::vector<std::pair<char*, size_t>> all_regions();
size_t physical_memory_bytes();
size_t available_memory_bytes();

// ---- streams.cpp -------------------------------------------------------------------------------
std::recursive_mutex& api_lock();
// `what` names the work in messages ("kernel launch #3", "a cuBLAS GEMM").
void enqueue(cudaStream_t stream, std::function<void()> op, std::string what);
void set_error(cudaError_t error);
// What the host asked of the device, counted for CUDAEMU_STATS=1 (printed at exit).
struct Counts {
  uint64_t launches = 0, gemms = 0, sorts = 0, copies_to_device = 0, copies_to_host = 0,
           memsets = 0, waits = 0;
  uint64_t blocking_waits = 0;          // waits that had queued work to run
  uint64_t allocations = 0, frees = 0;  // cudaMalloc, cudaFree
  double device_seconds = 0;  // time spent running queued work (streams.cpp's DeviceClock)
};
Counts& counts();

// ---- launch_log.cpp: CUDAEMU_LAUNCH_LOG, each kernel's largest launch (checked against nvcc's
// registers and shared memory by scripts/check_cuda_launches.py) -------------------------------
void note_launch(const void* kernel, uint64_t threads, size_t shared_bytes);

// ---- symbols.cpp: the mangled name of the function at `address` (the start of a kernel), from
// its module's symbol table; nullptr if none names it ------------------------------------------
const char* function_name(const void* address);

// ---- scheduler.cpp -----------------------------------------------------------------------------
void run_grid(const Launch& launch, uint64_t number);
// Lanes of the caller's warp that have not ended (the warp's launched threads less those done).
int warp_live_lanes();
// Whether [p, p + bytes) lies in the running block's shared memory (dynamic or __shared__).
bool in_shared_memory(const void* p, size_t bytes);
// "kernel launch #n, block (x,y,z), thread (x,y,z)" while a kernel runs, else "".
std::string where_in_kernel();
// " (outside the block's N bytes of dynamic shared memory)" for an address near them, else "".
std::string describe_shared_fault(const void* addr);

// ---- fiber.cpp: stacks and the switch between them --------------------------------------------
// Prepares `stack` (of `bytes`) to run entry(arg) at the first switch to the returned pointer.
void* prepare_stack(void* stack, size_t bytes, void (*entry)(void*), void* arg);
// Saves the running context's stack pointer in *from and resumes the one at `to`.
void switch_stack(void** from, void* to);
void* stack_at(size_t index);  // the index-th stack of this thread's pool
size_t stack_bytes();

[[noreturn]] void fatal(const std::string& what);
void install_fault_handler();

}  // namespace cudaemu
