// Kernels: the grid's blocks one after another; a block's threads as fibers on this OS thread,
// resumed in turn until each reaches a barrier (__syncthreads, a warp synchronisation or shuffle,
// a collective) or its end. A pass in which no thread can run is a deadlock: some threads wait at
// a barrier that the others never reach, a bug on a GPU too.
// With CUDAEMU_ORDER_CHECK=1 every launch runs twice from the same memory: blocks and threads in
// order, then both in reverse. A GPU may run them in either order, so different results are a
// race (threads of a block between two barriers, or blocks) or an order-dependent atomic: results
// that would differ run to run on a GPU.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "internal.h"

namespace cudaemu {

namespace detail {
thread_local Fiber* tl_fiber = nullptr;
thread_local Block* tl_block = nullptr;
}  // namespace detail

namespace {

enum State { kRunnable, kBlockWait, kWarpWait, kDone };

struct Warp {
  int lanes = 0;  // threads of the block in this warp
  int live = 0;
  int arrived = 0;
  bool in_collective = false;  // the lanes waiting are in a warp collective with a `once`
  uint64_t slots[32] = {};
  uint64_t scratch[512] = {};  // warp_scratch: 4 KB, a WMMA accumulator tile (1 KB) with room
};

// A thread's cp.async copies in flight: each waits in `pending` until a cp.async.wait_group
// lets its group complete; `group_ends[g]` is the end of group g in `pending` (the copies after
// the last end are not committed yet).
struct AsyncCopy {
  void* dst;
  const void* src;
  size_t bytes;
};
struct AsyncCopies {
  std::vector<AsyncCopy> pending;
  std::vector<size_t> group_ends;
};

struct BlockRun : Block {
  int threads = 0;
  int live = 0;
  int block_arrived = 0;
  bool in_collective = false;
  bool plain_barrier = false;  // the threads waiting are at __syncthreads
  uint64_t barriers = 0;       // __syncthreads passed by the block
  // Each CUB TempStorage the block's collectives used, with `barriers` at its last use.
  std::vector<std::pair<const void*, uint64_t>> storage_uses;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<AsyncCopies> async;  // each thread's cp.async copies in flight
  std::vector<uint64_t> scratch;
  // Dynamic shared memory: its own mapping, ending at a guard page (an overrun faults).
  unsigned char* dynamic_map = nullptr;
  size_t dynamic_map_bytes = 0, dynamic_bytes = 0;
  unsigned char* dynamic_aligned = nullptr;
  void* scheduler_sp = nullptr;
  uint64_t launch_number = 0;
  bool reverse = false;  // blocks and threads in reverse order
};

thread_local BlockRun* tl_run = nullptr;

// The __shared__ statics (cuda_runtime.h), filled with 0xff at every block start.
extern "C" char __start_cudaemu_shared[] __attribute__((weak));
extern "C" char __stop_cudaemu_shared[] __attribute__((weak));

bool order_check() {
  static const bool on = [] {
    const char* v = std::getenv("CUDAEMU_ORDER_CHECK");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

BlockRun& run() { return *tl_run; }
Warp& warp_of(const Fiber& f) { return run().warps[size_t(f.linear / 32)]; }

void yield() {
  Fiber* f = detail::tl_fiber;
  switch_stack(&f->sp, run().scheduler_sp);
}

void release_block(BlockRun& b) {
  for (Fiber& f : b.fibers)
    if (f.state == kBlockWait) f.state = kRunnable;
  b.block_arrived = 0;
  b.in_collective = false;
  if (b.plain_barrier) ++b.barriers;
  b.plain_barrier = false;
}

void release_warp(BlockRun& b, int w) {
  const int first = w * 32, last = std::min(b.threads, first + 32);
  for (int i = first; i < last; ++i)
    if (b.fibers[size_t(i)].state == kWarpWait) b.fibers[size_t(i)].state = kRunnable;
  b.warps[size_t(w)].arrived = 0;
  b.warps[size_t(w)].in_collective = false;
}

// Commits the copies issued since the last commit as a group (cp.async.commit_group).
void commit_async_copies(AsyncCopies& q) { q.group_ends.push_back(q.pending.size()); }

// Performs the oldest `groups` committed groups of the thread's copies.
void complete_async_copies(AsyncCopies& q, size_t groups) {
  if (groups == 0) return;
  const size_t end = q.group_ends[groups - 1];
  for (size_t i = 0; i < end; ++i)
    std::memcpy(q.pending[i].dst, q.pending[i].src, q.pending[i].bytes);
  q.pending.erase(q.pending.begin(), q.pending.begin() + long(end));
  q.group_ends.erase(q.group_ends.begin(), q.group_ends.begin() + long(groups));
  for (size_t& e : q.group_ends) e -= end;
}

void fiber_main(void* arg) {
  auto* f = static_cast<Fiber*>(arg);
  BlockRun& b = run();
  (*b.body)();
  // Copies still in flight complete (a GPU finishes them too); none is read after this.
  AsyncCopies& q = b.async[size_t(f->linear)];
  commit_async_copies(q);
  complete_async_copies(q, q.group_ends.size());
  f->state = kDone;
  --b.live;
  Warp& w = warp_of(*f);
  --w.live;
  if (w.arrived > 0 && w.arrived == w.live) {
    if (w.in_collective)
      fatal(
          "a thread ended while the other lanes of its warp wait in a warp-wide WMMA operation (" +
          where_in_kernel() + ")");
    release_warp(b, f->linear / 32);
  }
  if (b.block_arrived > 0 && b.block_arrived == b.live) {
    if (b.in_collective)
      fatal("a thread ended while the others of its block wait in a block-wide collective (" +
            where_in_kernel() + ")");
    release_block(b);
  }
  switch_stack(&f->sp, b.scheduler_sp);
  fatal("a finished thread was resumed");
}

std::string dims(const uint3& v) {
  std::ostringstream s;
  s << "(" << v.x << "," << v.y << "," << v.z << ")";
  return s.str();
}
std::string dims(const dim3& v) { return dims(uint3{v.x, v.y, v.z}); }

void deadlock(const BlockRun& b) {
  int at_block = 0, at_warp = 0;
  for (const Fiber& f : b.fibers) {
    at_block += f.state == kBlockWait;
    at_warp += f.state == kWarpWait;
  }
  std::ostringstream s;
  s << "deadlock in kernel launch #" << b.launch_number << ", block " << dims(b.block_idx) << ": "
    << at_block << " threads wait at __syncthreads or a block collective, " << at_warp
    << " at a warp synchronisation or shuffle, " << b.live << " of " << b.threads
    << " not finished";
  fatal(s.str());
}

void run_block(BlockRun& b) {
  b.live = b.threads;
  b.block_arrived = 0;
  b.in_collective = false;
  b.plain_barrier = false;
  b.barriers = 0;
  b.storage_uses.clear();
  for (AsyncCopies& q : b.async) q = {};
  for (Warp& w : b.warps) {
    w.live = w.lanes;
    w.arrived = 0;
    w.in_collective = false;
  }
  if (b.dynamic_aligned) std::memset(b.dynamic_aligned, 0xff, b.dynamic_bytes);
  if (+__start_cudaemu_shared != +__stop_cudaemu_shared)
    std::memset(__start_cudaemu_shared, 0xff,
                size_t(__stop_cudaemu_shared - __start_cudaemu_shared));
  for (int i = 0; i < b.threads; ++i) {
    Fiber& f = b.fibers[size_t(i)];
    f.state = kRunnable;
    f.sp = prepare_stack(f.stack, stack_bytes(), fiber_main, &f);
  }
  while (b.live > 0) {
    bool progressed = false;
    for (int k = 0; k < b.threads; ++k) {
      Fiber& f = b.fibers[size_t(b.reverse ? b.threads - 1 - k : k)];
      if (f.state != kRunnable) continue;
      detail::tl_fiber = &f;
      switch_stack(&b.scheduler_sp, f.sp);
      progressed = true;
    }
    if (!progressed) deadlock(b);
  }
  detail::tl_fiber = nullptr;
}

}  // namespace

void run_grid(const Launch& launch, uint64_t number) {
  BlockRun b;
  b.grid_dim = launch.grid;
  b.block_dim = launch.block;
  b.threads = int(launch.block.x * launch.block.y * launch.block.z);
  b.body = &launch.body;
  b.launch_number = number;
  b.fibers.resize(size_t(b.threads));
  for (int i = 0; i < b.threads; ++i) {
    Fiber& f = b.fibers[size_t(i)];
    f.linear = i;
    f.thread_idx =
        uint3{unsigned(i) % launch.block.x, unsigned(i) / launch.block.x % launch.block.y,
              unsigned(i) / (launch.block.x * launch.block.y)};
    f.stack = stack_at(size_t(i));
  }
  b.warps.resize(size_t((b.threads + 31) / 32));
  b.async.resize(size_t(b.threads));
  for (size_t w = 0; w < b.warps.size(); ++w)
    b.warps[w].lanes = std::min(32, b.threads - int(w) * 32);
  b.scratch.resize(2 * size_t(b.threads) + 8);
  if (launch.shared_bytes > 0) {
    const size_t page = size_t(getpagesize());
    b.dynamic_bytes = (launch.shared_bytes + 127) / 128 * 128;
    const size_t span = (b.dynamic_bytes + page - 1) / page * page;
    b.dynamic_map_bytes = span + 2 * page;  // a guard page before and after
    void* m = mmap(nullptr, b.dynamic_map_bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fatal("cannot map dynamic shared memory");
    b.dynamic_map = static_cast<unsigned char*>(m);
    mprotect(b.dynamic_map + page, span, PROT_READ | PROT_WRITE);
    b.dynamic_aligned = b.dynamic_map + page + span - b.dynamic_bytes;
  }
  BlockRun* const outer_run = tl_run;
  Block* const outer_block = detail::tl_block;
  tl_run = &b;
  detail::tl_block = &b;
  const auto run_blocks = [&] {
    const uint64_t nx = launch.grid.x, ny = launch.grid.y, n = nx * ny * launch.grid.z;
    for (uint64_t k = 0; k < n; ++k) {
      const uint64_t i = b.reverse ? n - 1 - k : k;
      b.block_idx = uint3{unsigned(i % nx), unsigned(i / nx % ny), unsigned(i / (nx * ny))};
      run_block(b);
    }
  };
  if (!order_check()) {
    run_blocks();
  } else {
    const auto regions = all_regions();
    const auto copy = [&] {
      std::vector<std::vector<char>> out;
      for (const auto& [p, n] : regions) out.emplace_back(p, p + n);
      return out;
    };
    const std::vector<std::vector<char>> before = copy();
    run_blocks();
    const std::vector<std::vector<char>> forward = copy();
    for (size_t r = 0; r < regions.size(); ++r)
      std::memcpy(regions[r].first, before[r].data(), regions[r].second);
    b.reverse = true;
    run_blocks();
    b.reverse = false;
    for (size_t r = 0; r < regions.size(); ++r) {
      const char* now = regions[r].first;
      for (size_t i = 0; i < regions[r].second; ++i)
        if (now[i] != forward[r][i]) {
          tl_run = outer_run;
          fatal("kernel launch #" + std::to_string(number) +
                " writes other bytes when its blocks and threads run in reverse order (byte " +
                std::to_string(i) + " of a " + std::to_string(regions[r].second) +
                "-byte allocation): a race between threads or blocks, or an order-dependent "
                "atomic (CUDAEMU_ORDER_CHECK)");
        }
    }
  }
  tl_run = outer_run;
  detail::tl_block = outer_block;
  if (b.dynamic_map) munmap(b.dynamic_map, b.dynamic_map_bytes);
}

std::string where_in_kernel() {
  if (tl_run == nullptr) return "";
  std::ostringstream s;
  s << "kernel launch #" << tl_run->launch_number << ", block " << dims(tl_run->block_idx) << " of "
    << dims(tl_run->grid_dim);
  if (detail::tl_fiber)
    s << ", thread " << dims(detail::tl_fiber->thread_idx) << " of " << dims(tl_run->block_dim);
  return s.str();
}

int block_threads() { return run().threads; }

int check_collective_threads(int declared, const char* collective) {
  if (declared != run().threads)
    fatal(std::string(collective) + "<T, " + std::to_string(declared) + "> in a block of " +
          std::to_string(run().threads) + " threads (" + where_in_kernel() + ")");
  return declared;
}

std::string describe_shared_fault(const void* addr) {
  if (tl_run == nullptr || tl_run->dynamic_map == nullptr) return "";
  const auto* a = static_cast<const unsigned char*>(addr);
  if (a < tl_run->dynamic_map || a >= tl_run->dynamic_map + tl_run->dynamic_map_bytes) return "";
  return " (outside the block's " + std::to_string(tl_run->dynamic_bytes) +
         " bytes of dynamic shared memory)";
}

void sync_block(const std::function<void()>* once, bool plain) {
  BlockRun& b = run();
  Fiber* f = detail::tl_fiber;
  ++b.block_arrived;
  if (once) b.in_collective = true;
  if (plain) b.plain_barrier = true;
  if (b.block_arrived == b.live) {
    if (once) (*once)();
    release_block(b);
    return;
  }
  f->state = kBlockWait;
  yield();
}

void collective_storage_used(const void* temp, const char* collective) {
  BlockRun& b = run();
  for (auto& [p, at] : b.storage_uses)
    if (p == temp) {
      if (at == b.barriers)
        fatal(std::string(collective) +
              " reuses a TempStorage with no __syncthreads() since its last collective (CUB "
              "requires one: the last threads may still read it) (" +
              where_in_kernel() + ")");
      at = b.barriers;
      return;
    }
  b.storage_uses.emplace_back(temp, b.barriers);
}

void sync_warp(const std::function<void()>* once) {
  BlockRun& b = run();
  Fiber* f = detail::tl_fiber;
  Warp& w = warp_of(*f);
  ++w.arrived;
  if (once) w.in_collective = true;
  if (w.arrived == w.live) {
    if (once) (*once)();
    release_warp(b, f->linear / 32);
    return;
  }
  f->state = kWarpWait;
  yield();
}

void check_in_mask(unsigned mask, const char* call) {
  if (((mask >> lane()) & 1u) == 0)
    fatal(std::string(call) + " with a mask that leaves out the calling lane " +
          std::to_string(lane()) + " (undefined in CUDA) (" + where_in_kernel() + ")");
}

uint64_t warp_exchange(uint64_t v, int src) {
  BlockRun& b = run();
  Fiber* f = detail::tl_fiber;
  Warp& w = warp_of(*f);
  const int lane = f->linear & 31;
  w.slots[lane] = v;
  sync_warp();
  // Callers map a source outside the shuffle's width to the caller itself, as CUDA defines.
  const bool valid =
      src >= 0 && src < w.lanes && b.fibers[size_t((f->linear & ~31) + src)].state != kDone;
  const uint64_t out = valid ? w.slots[src] : ~uint64_t(0);
  sync_warp();
  return out;
}

int warp_live_lanes() { return warp_of(*detail::tl_fiber).live; }

namespace {
AsyncCopies& thread_async_copies() { return run().async[size_t(detail::tl_fiber->linear)]; }
}  // namespace

void cp_async(void* shared_dst, const void* global_src, size_t bytes) {
  if (bytes != 16 || reinterpret_cast<uintptr_t>(shared_dst) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(global_src) % 16 != 0 || !in_shared_memory(shared_dst, 16) ||
      !device_accessible(global_src))
    fatal("cp.async.cg: a copy of " + std::to_string(bytes) +
          " bytes that is not 16 bytes of device memory to 16 bytes of shared memory, both "
          "16-byte aligned (" +
          where_in_kernel() + ")");
  thread_async_copies().pending.push_back({shared_dst, global_src, bytes});
}

void cp_async_commit() { commit_async_copies(thread_async_copies()); }

void cp_async_wait(int newest_in_flight) {
  AsyncCopies& q = thread_async_copies();
  const size_t committed = q.group_ends.size();
  if (committed > size_t(newest_in_flight))
    complete_async_copies(q, committed - size_t(newest_in_flight));
}

bool in_shared_memory(const void* p, size_t bytes) {
  const auto* a = static_cast<const char*>(p);
  const BlockRun& b = run();
  const auto* dyn = reinterpret_cast<const char*>(b.dynamic_aligned);
  if (dyn != nullptr && a >= dyn && a + bytes <= dyn + b.dynamic_bytes) return true;
  return __start_cudaemu_shared != nullptr && a >= __start_cudaemu_shared &&
         a + bytes <= __stop_cudaemu_shared;
}

void* warp_scratch(size_t bytes) {
  Warp& w = warp_of(*detail::tl_fiber);
  if (bytes > sizeof w.scratch)
    fatal("a warp collective needs " + std::to_string(bytes) + " bytes of scratch");
  return w.scratch;
}

void* block_scratch(size_t bytes) {
  BlockRun& b = run();
  if (bytes > b.scratch.size() * sizeof(uint64_t))
    fatal("a block collective needs " + std::to_string(bytes) + " bytes of scratch");
  return b.scratch.data();
}

unsigned char* dynamic_shared_memory() {
  BlockRun& b = run();
  if (b.dynamic_aligned == nullptr)
    fatal("a kernel launched without dynamic shared memory asked for it (" + where_in_kernel() +
          ")");
  return b.dynamic_aligned;
}

}  // namespace cudaemu
