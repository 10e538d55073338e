// Device and pinned memory. A device allocation is its own mapping: the data at the end of its
// pages (256-byte aligned, as cudaMalloc's), then a guard page, so an overrun faults at once; new
// memory holds 0xff bytes (NaN as fp32, -1 as integers), so a read of what nobody wrote shows.
// While no emulated GPU work runs, the data pages are closed (PROT_NONE): host code that reads
// device memory, which on a GPU would read garbage or fault, faults here and is named.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "internal.h"

namespace cudaemu {

namespace {

struct Allocation {
  char* map = nullptr;  // the mapping: [map, map + span) data pages, then the guard page
  size_t span = 0;
  char* data = nullptr;
  size_t bytes = 0;
  bool pinned = false;
};

// Never destroyed: backends that outlive main() free their memory after static destructors ran.
std::map<uintptr_t, Allocation>& allocations() {
  static auto* all = new std::map<uintptr_t, Allocation>;
  return *all;
}
int open_count = 0;

bool protecting() {
  static const bool on = [] {
    const char* v = std::getenv("CUDAEMU_PROTECT");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

const Allocation* find(const void* p) {
  const auto& all = allocations();
  const auto u = reinterpret_cast<uintptr_t>(p);
  auto it = all.upper_bound(u);
  if (it == all.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  return u <= reinterpret_cast<uintptr_t>(a.data) + a.bytes ? &a : nullptr;
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

void* map_allocation(size_t bytes, bool pinned) {
  if (bytes == 0) return nullptr;
  const size_t page = size_t(getpagesize());
  const size_t padded = round_up(bytes, 256);
  const size_t span = round_up(padded, page);
  void* m = mmap(nullptr, span + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  Allocation a;
  a.map = static_cast<char*>(m);
  a.span = span;
  a.data = a.map + span - padded;
  a.bytes = bytes;
  a.pinned = pinned;
  mprotect(a.map + span, page, PROT_NONE);
  std::memset(a.map, 0xff, span);  // the slack before the data too: an underrun reads NaN / -1
  if (!pinned && protecting() && open_count == 0) mprotect(a.map, span, PROT_NONE);
  allocations()[reinterpret_cast<uintptr_t>(a.data)] = a;
  return a.data;
}

bool unmap_allocation(void* p, bool pinned) {
  auto& all = allocations();
  auto it = all.find(reinterpret_cast<uintptr_t>(p));
  if (it == all.end() || it->second.pinned != pinned) return false;
  munmap(it->second.map, it->second.span + size_t(getpagesize()));
  all.erase(it);
  return true;
}

void set_device_pages(int prot) {
  if (!protecting()) return;
  for (auto& [at, a] : allocations())
    if (!a.pinned) mprotect(a.map, a.span, prot);
}

// Names a fault: in a kernel (which launch, block, thread), on a guard page, or host code
// touching device memory.
char alt_stack[1 << 16];
void on_fault(int sig, siginfo_t* info, void*) {
  const void* addr = info->si_addr;
  std::string what =
      std::string("cudaemu: ") + (sig == SIGSEGV ? "invalid memory access" : "bus error");
  char buf[64];
  std::snprintf(buf, sizeof buf, " at %p", addr);
  what += buf;
  const std::string where = where_in_kernel();
  const auto u = reinterpret_cast<uintptr_t>(addr);
  const size_t page = size_t(getpagesize());
  for (const auto& [at, a] : allocations()) {
    const auto m = reinterpret_cast<uintptr_t>(a.map);
    if (u >= m + a.span && u < m + a.span + page) {
      std::snprintf(buf, sizeof buf, " (%zu bytes past the end of a %zu-byte allocation)",
                    size_t(u - at - a.bytes), a.bytes);
      what += buf;
    } else if (u >= at && u < at + a.bytes && !a.pinned && open_count == 0) {
      what += " (device memory read or written by host code, outside any GPU work)";
    }
  }
  what += describe_shared_fault(addr);
  if (info->si_code == SI_KERNEL)
    what += " (a general-protection fault: most likely a misaligned 16-byte vector access)";
  what += where.empty() ? " in host code" : " in " + where;
  what += "\n";
  if (write(2, what.data(), what.size()) < 0) {
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void install_fault_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

void* device_alloc(size_t bytes) { return map_allocation(bytes, false); }
bool device_free(void* p) { return unmap_allocation(p, false); }
void* pinned_alloc(size_t bytes) { return map_allocation(bytes, true); }
bool pinned_free(void* p) { return unmap_allocation(p, true); }

bool is_pinned(const void* p) {
  const Allocation* a = find(p);
  return a && a->pinned;
}
bool is_device(const void* p) {
  const Allocation* a = find(p);
  return a && !a->pinned;
}
bool same_allocation(const void* a, const void* b) {
  const Allocation* x = find(a);
  return x != nullptr && x == find(b);
}
bool device_accessible(const void* p) {
  std::lock_guard lock(api_lock());
  return find(p) != nullptr;
}

// The 0xff bytes around each allocation's data (up to 256 before it, its padding after it) are
// still 0xff: else `what` wrote outside an allocation (an overrun within its padding, which the
// guard page after it cannot catch, or an underrun).
void check_slack(const std::string& what) {
  static const std::vector<unsigned char> ff(256 + 256, 0xff);
  for (const auto& [at, a] : allocations()) {
    const size_t head = std::min<size_t>(256, size_t(a.data - a.map));
    const size_t tail = round_up(a.bytes, 256) - a.bytes;
    const bool head_ok = std::memcmp(a.data - head, ff.data(), head) == 0;
    const bool tail_ok = std::memcmp(a.data + a.bytes, ff.data(), tail) == 0;
    if (head_ok && tail_ok) continue;
    size_t reach = 0;  // bytes past the end up to the last changed one
    for (size_t k = 0; k < tail; ++k)
      if (static_cast<unsigned char>(a.data[a.bytes + k]) != 0xff) reach = k + 1;
    fatal(what +
          (tail_ok ? std::string(" wrote before the start of a ")
                   : " wrote up to " + std::to_string(reach) + " bytes past the end of a ") +
          std::to_string(a.bytes) + "-byte " + (a.pinned ? "pinned" : "device") + " allocation");
  }
}

void open_device_memory() {
  if (open_count++ == 0) set_device_pages(PROT_READ | PROT_WRITE);
}
void close_device_memory() {
  if (--open_count == 0) set_device_pages(PROT_NONE);
}

std::vector<std::pair<char*, size_t>> all_regions() {
  std::vector<std::pair<char*, size_t>> out;
  for (auto& [at, a] : allocations()) out.emplace_back(a.data, a.bytes);
  return out;
}

size_t physical_memory_bytes() { return size_t(sysconf(_SC_PHYS_PAGES)) * size_t(getpagesize()); }

size_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kb) == 1) return size_t(kb) * 1024;
  }
  return physical_memory_bytes() / 2;
}

}  // namespace cudaemu
