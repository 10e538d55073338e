// The runtime API: devices, errors, memory calls, streams and events. A stream is a queue: kernel
// launches, copies and memsets wait in it until a synchronisation (of the stream, an event
// recorded on it, the device, a synchronous copy or a free) runs them, in order. So a result read
// before its synchronisation is stale, as on a GPU. Copies follow CUDA's rules for pageable host
// memory: to the device, the source is read at the call; to pageable host memory, the call waits
// for the stream and copies; from and to pinned memory (cudaMallocHost), the copy runs in order in
// the queue, so reusing a pinned buffer before its copy ran is caught too. A synchronous
// cudaMemcpy or cudaMemset waits, as CUDA's legacy default stream does, for the legacy stream
// and the blocking streams only: work queued on a cudaStreamNonBlocking stream is not waited for.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "internal.h"

struct CUstream_st {
  struct Op {
    uint64_t seq;
    std::function<void()> run;
    std::string what;
  };
  std::deque<Op> ops;
  unsigned flags = 0;
};
struct CUevent_st {
  CUstream_st* stream = nullptr;
  uint64_t seq = 0;
  bool recorded = false;
  unsigned flags = 0;
};

namespace cudaemu {

namespace {

uint64_t next_seq = 1;
cudaError_t last_error = cudaSuccess;
// The emulator's state is never destroyed: backends that outlive main() free their memory and
// synchronise after static destructors ran.
std::map<const void*, int>& max_dynamic_shared() {  // cudaFuncSetAttribute
  static auto* m = new std::map<const void*, int>;
  return *m;
}
constexpr int kDefaultDynamicShared = 48 * 1024, kMaxDynamicShared = 232448;

CUstream_st& legacy_stream() {
  static auto* s = new CUstream_st;
  return *s;
}
std::vector<CUstream_st*>& streams() {
  static auto* all = new std::vector<CUstream_st*>{&legacy_stream()};
  return *all;
}
CUstream_st& stream_of(cudaStream_t s) { return s ? *s : legacy_stream(); }

bool devices_hidden() {
  const char* v = std::getenv("CUDAEMU_DEVICES");
  return v != nullptr && std::string(v) == "0";
}

struct OpenMemory {
  OpenMemory() { open_device_memory(); }
  ~OpenMemory() { close_device_memory(); }
};

// Time spent running queued work (kernels, GEMMs, sorts, copies, the emulation's checks), counted
// once where a flush runs inside another (an event wait in a queue): the rest of the process's
// time is the host's own, what a GPU's host would spend too (CUDAEMU_STATS).
class DeviceClock {
 public:
  DeviceClock() : outermost_(depth_++ == 0), start_(std::chrono::steady_clock::now()) {}
  ~DeviceClock() {
    --depth_;
    if (outermost_)
      counts().device_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  DeviceClock(const DeviceClock&) = delete;
  DeviceClock& operator=(const DeviceClock&) = delete;

 private:
  static inline int depth_ = 0;
  bool outermost_;
  std::chrono::steady_clock::time_point start_;
};

// Runs the stream's queued work up to sequence number `upto`; returns how many operations ran.
uint64_t flush(CUstream_st& s, uint64_t upto = std::numeric_limits<uint64_t>::max()) {
  if (s.ops.empty() || s.ops.front().seq > upto) return 0;
  DeviceClock clock;
  OpenMemory open;
  uint64_t ran = 0;
  while (!s.ops.empty() && s.ops.front().seq <= upto) {
    auto op = std::move(s.ops.front());
    s.ops.pop_front();
    op.run();
    check_slack(op.what);
    ++ran;
  }
  return ran;
}

// Runs all queued work in the order it was queued (blocking_only: only the legacy stream's and
// that of streams made without cudaStreamNonBlocking, what a synchronous cudaMemcpy or cudaMemset
// waits for; work on a non-blocking stream stays queued, as on a GPU it may still be running).
uint64_t flush_all(bool blocking_only = false) {
  DeviceClock clock;
  OpenMemory open;
  uint64_t ran = 0;
  for (;;) {
    CUstream_st* first = nullptr;
    for (CUstream_st* s : streams())
      if (!s->ops.empty() && !(blocking_only && (s->flags & cudaStreamNonBlocking)) &&
          (!first || s->ops.front().seq < first->ops.front().seq))
        first = s;
    if (!first) return ran;
    auto op = std::move(first->ops.front());
    first->ops.pop_front();
    op.run();
    check_slack(op.what);
    ++ran;
  }
}

// A wait of the host: counted, and counted as blocking when it had queued work to run (a GPU
// might still have been busy with it: the host would have waited for the device).
void count_wait(uint64_t ran) {
  ++counts().waits;
  if (ran > 0) ++counts().blocking_waits;
}

cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}

bool valid_stream(cudaStream_t s) {
  return !s || std::find(streams().begin(), streams().end(), s) != streams().end();
}

std::chrono::steady_clock::time_point& first_call() {
  static std::chrono::steady_clock::time_point t;
  return t;
}

void print_counts() {
  const Counts& c = counts();
  std::fprintf(stderr,
               "cudaemu: %llu kernel launches, %llu GEMMs, %llu sorts, %llu copies to the device, "
               "%llu to the host, %llu memsets, %llu waits for the device (%llu with work queued), "
               "%llu cudaMalloc and %llu cudaFree calls\n",
               (unsigned long long)c.launches, (unsigned long long)c.gemms,
               (unsigned long long)c.sorts, (unsigned long long)c.copies_to_device,
               (unsigned long long)c.copies_to_host, (unsigned long long)c.memsets,
               (unsigned long long)c.waits, (unsigned long long)c.blocking_waits,
               (unsigned long long)c.allocations, (unsigned long long)c.frees);
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - first_call()).count();
  std::fprintf(stderr,
               "cudaemu: %.3f s since the first CUDA call: %.3f s running queued work, %.3f s "
               "the host's own\n",
               total, c.device_seconds, total - c.device_seconds);
}

void start() {
  static bool started = false;
  if (!started) {
    started = true;
    first_call() = std::chrono::steady_clock::now();
    install_fault_handler();
    const char* v = std::getenv("CUDAEMU_STATS");
    if (v != nullptr && std::string(v) == "1") std::atexit(print_counts);
  }
}

}  // namespace

std::recursive_mutex& api_lock() {
  static auto* m = new std::recursive_mutex;
  return *m;
}

void enqueue(cudaStream_t stream, std::function<void()> op, std::string what) {
  stream_of(stream).ops.push_back({next_seq++, std::move(op), std::move(what)});
}

void set_error(cudaError_t error) { last_error = error; }
Counts& counts() {
  static auto* c = new Counts;
  return *c;
}

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "cudaemu: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

[[noreturn]] void fatal_argument(const void* kernel, int index, const void* p) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "argument %d of a launch of kernel %p is %p, host memory a GPU cannot read "
                "(neither cudaMalloc nor cudaMallocHost)",
                index, kernel, p);
  fatal(buf);
}

[[noreturn]] void fatal_wmma(const void* p, unsigned ldm, size_t element_bytes) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "a WMMA load or store at %p with ldm %u (elements of %zu bytes): CUDA needs a "
                "32-byte aligned pointer and ldm a multiple of 16 bytes",
                p, ldm, element_bytes);
  fatal(buf + (" (" + where_in_kernel() + ")"));
}

void submit(Launch launch) {
  std::lock_guard lock(api_lock());
  start();
  const dim3 g = launch.grid, b = launch.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 ||
      b.z > 64 || g.y > 65535 || g.z > 65535 || g.x > 2147483647u)
    return set_error(cudaErrorInvalidConfiguration);
  int limit = kDefaultDynamicShared;  // until cudaFuncSetAttribute sets the kernel's own
  if (auto it = max_dynamic_shared().find(launch.kernel); it != max_dynamic_shared().end())
    limit = it->second;
  if (launch.shared_bytes > size_t(limit)) return set_error(cudaErrorInvalidValue);
  if (!valid_stream(launch.stream)) return set_error(cudaErrorInvalidResourceHandle);
  const uint64_t number = ++counts().launches;
  note_launch(launch.kernel, threads, launch.shared_bytes);
  auto shared = std::make_shared<Launch>(std::move(launch));
  enqueue(
      shared->stream, [shared, number] { run_grid(*shared, number); },
      "kernel launch #" + std::to_string(number));
}

}  // namespace cudaemu

using namespace cudaemu;
using Lock = std::lock_guard<std::recursive_mutex>;

cudaError_t cudaGetDeviceCount(int* count) {
  Lock lock(api_lock());
  start();
  if (devices_hidden()) {
    *count = 0;
    return fail(cudaErrorNoDevice);
  }
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 && !devices_hidden() ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "cudaemu (host emulation, not a GPU)");
  prop->totalGlobalMem = physical_memory_bytes();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = kMaxDynamicShared;
  prop->sharedMemPerMultiprocessor = 233472;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}
namespace cudaemu {
unsigned long long host_waits() {
  Lock lock(api_lock());
  return counts().waits;
}
unsigned long long blocking_host_waits() {
  Lock lock(api_lock());
  return counts().blocking_waits;
}
}  // namespace cudaemu

cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *free = available_memory_bytes();
  *total = physical_memory_bytes();
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  Lock lock(api_lock());
  count_wait(flush_all());
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  Lock lock(api_lock());
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction:
      return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected (CUDAEMU_DEVICES=0)";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorNotReady:
      return "device not ready";
    default:
      return cudaGetErrorName(e);
  }
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  Lock lock(api_lock());
  start();
  ++counts().allocations;
  *ptr = device_alloc(bytes);
  return *ptr || bytes == 0 ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* ptr) {
  Lock lock(api_lock());
  if (!ptr) return cudaSuccess;
  ++counts().frees;
  count_wait(flush_all());  // cudaFree waits for the device
  return device_free(ptr) ? cudaSuccess : fail(cudaErrorInvalidDevicePointer);
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  Lock lock(api_lock());
  start();
  *ptr = pinned_alloc(bytes);
  return *ptr || bytes == 0 ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* ptr) {
  Lock lock(api_lock());
  if (!ptr) return cudaSuccess;
  count_wait(flush_all());  // cudaFreeHost waits for the device
  return pinned_free(ptr) ? cudaSuccess : fail(cudaErrorInvalidValue);
}

namespace {

// The copy's direction must agree with where its pointers are.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = is_device(dst), src_dev = is_device(src);
  const bool dst_ok = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyHostToDevice
                          ? dst_dev
                          : (kind == cudaMemcpyDefault || !dst_dev);
  const bool src_ok = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDeviceToHost
                          ? src_dev
                          : (kind == cudaMemcpyDefault || !src_dev);
  if (bytes > 0 && (!dst_ok || !src_ok)) return cudaErrorInvalidValue;
  if (bytes > 0 && (dst_dev && !is_device(static_cast<char*>(dst) + bytes - 1)))
    fatal("a copy writes past the end of its device allocation");
  if (bytes > 0 && (src_dev && !is_device(static_cast<const char*>(src) + bytes - 1)))
    fatal("a copy reads past the end of its device allocation");
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  Lock lock(api_lock());
  start();
  if (bytes == 0) return cudaSuccess;
  if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t e = check_copy(dst, src, bytes, kind); e != cudaSuccess) return fail(e);
  const bool src_device_side = is_device(src) || is_pinned(src);
  const bool dst_device_side = is_device(dst) || is_pinned(dst);
  if (!dst_device_side) {  // to pageable host memory: wait for the stream, then copy
    ++counts().copies_to_host;
    count_wait(flush(stream_of(stream)));
    OpenMemory open;
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
  }
  if (is_device(dst) && !is_device(src))
    ++counts().copies_to_device;
  else if (!is_device(dst))
    ++counts().copies_to_host;
  if (!src_device_side) {  // from pageable host memory: read now
    auto copy = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                    static_cast<const char*>(src) + bytes);
    enqueue(
        stream, [dst, copy] { std::memcpy(dst, copy->data(), copy->size()); },
        "a copy to the device");
    return cudaSuccess;
  }
  if (static_cast<const char*>(src) < static_cast<char*>(dst) + bytes &&
      static_cast<char*>(dst) < static_cast<const char*>(src) + bytes)
    fatal("a copy between overlapping ranges (undefined in CUDA)");
  enqueue(
      stream, [dst, src, bytes] { std::memcpy(dst, src, bytes); }, "a copy");
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  Lock lock(api_lock());
  start();
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind); e != cudaSuccess) return fail(e);
  count_wait(flush_all(/*blocking_only=*/true));
  OpenMemory open;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  Lock lock(api_lock());
  if (bytes == 0) return cudaSuccess;
  if (!is_device(dst) || !is_device(static_cast<char*>(dst) + bytes - 1))
    return fail(cudaErrorInvalidValue);
  ++counts().memsets;
  enqueue(
      stream, [dst, value, bytes] { std::memset(dst, value, bytes); }, "a memset");
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  Lock lock(api_lock());
  if (const cudaError_t e = cudaMemsetAsync(dst, value, bytes, nullptr); e != cudaSuccess) return e;
  count_wait(flush_all(/*blocking_only=*/true));
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  Lock lock(api_lock());
  start();
  auto* s = new CUstream_st;
  s->flags = flags;
  streams().push_back(s);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Lock lock(api_lock());
  if (!stream || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  flush(*stream);
  auto& all = streams();
  all.erase(std::find(all.begin(), all.end(), stream));
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  Lock lock(api_lock());
  if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  count_wait(flush(stream_of(stream)));
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  Lock lock(api_lock());
  if (!event || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (!event->recorded) return cudaSuccess;
  CUstream_st* other = event->stream;
  const uint64_t seq = event->seq;
  enqueue(
      stream, [other, seq] { flush(*other, seq); }, "a wait for an event");
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  *event = new CUevent_st;
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  Lock lock(api_lock());
  if (!event || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  event->stream = &stream_of(stream);
  event->seq = next_seq - 1;  // everything queued so far
  event->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  Lock lock(api_lock());
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  count_wait(event->recorded ? flush(*event->stream, event->seq) : 0);
  return cudaSuccess;
}
// Whether work the event marks is still queued: cudaEventQuery says cudaErrorNotReady then, and
// runs nothing (the work runs at a synchronisation, as ever); a never recorded event is done.
static bool event_pending(cudaEvent_t event) {
  return event->recorded && !event->stream->ops.empty() &&
         event->stream->ops.front().seq <= event->seq;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  Lock lock(api_lock());
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  return event_pending(event) ? cudaErrorNotReady : cudaSuccess;  // NotReady is no error
}
// CUDA's rules: both events recorded, neither created with cudaEventDisableTiming, both done.
// There is no GPU time to measure: 0 ms.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  Lock lock(api_lock());
  if (!ms || !start || !end) return fail(cudaErrorInvalidValue);
  if (!start->recorded || !end->recorded || (start->flags & cudaEventDisableTiming) ||
      (end->flags & cudaEventDisableTiming))
    return fail(cudaErrorInvalidResourceHandle);
  if (event_pending(start) || event_pending(end)) return cudaErrorNotReady;
  *ms = 0.f;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  Lock lock(api_lock());
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > kMaxDynamicShared) return fail(cudaErrorInvalidValue);
    max_dynamic_shared()[func] = value;
  } else if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
    // A percentage of the L1 as shared memory, or -1 (no preference); a hint with no effect here.
    if (value < -1 || value > 100) return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  Lock lock(api_lock());
  if (attr == nullptr || func == nullptr) return fail(cudaErrorInvalidValue);
  *attr = cudaFuncAttributes{};
  attr->maxThreadsPerBlock = 1024;
  attr->maxDynamicSharedSizeBytes = kDefaultDynamicShared;
  if (auto it = max_dynamic_shared().find(func); it != max_dynamic_shared().end())
    attr->maxDynamicSharedSizeBytes = it->second;
  return cudaSuccess;
}

cudaError_t cudaFuncGetName(const char** name, const void* func) {
  if (name == nullptr || func == nullptr) return fail(cudaErrorInvalidValue);
  const char* found = function_name(func);
  if (found == nullptr) return fail(cudaErrorInvalidDeviceFunction);
  *name = found;
  return cudaSuccess;
}
