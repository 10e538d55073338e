// CUDAEMU_LAUNCH_LOG=FILE: at exit, one line per kernel the process launched, appended to FILE:
//   module <TAB> offset <TAB> most threads a block <TAB> most dynamic shared bytes <TAB> launches
// module is the executable or library that holds the kernel and offset the kernel's address in it
// (hex, as `nm` prints symbol values), so that scripts/check_cuda_launches.py can name it and
// set the largest block it was launched with beside the registers and shared memory nvcc gave
// the same kernel: what a GPU checks at launch, and the emulation cannot.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "internal.h"

namespace cudaemu {
namespace {

struct KernelUse {
  uint64_t threads = 0, shared_bytes = 0, launches = 0;
};

std::map<const void*, KernelUse>& uses() {
  static auto* m = new std::map<const void*, KernelUse>;
  return *m;
}

const char* log_path() {
  static const char* path = std::getenv("CUDAEMU_LAUNCH_LOG");
  return path != nullptr && *path != '\0' ? path : nullptr;
}

// One write per line on an O_APPEND descriptor: the processes of a parallel ctest share the file
// and their lines do not interleave.
void write_log() {
  const int fd = ::open(log_path(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "cudaemu: cannot open CUDAEMU_LAUNCH_LOG %s\n", log_path());
    return;
  }
  for (const auto& [kernel, use] : uses()) {
    Dl_info info{};
    if (::dladdr(kernel, &info) == 0 || info.dli_fname == nullptr) continue;
    char line[4096];
    const int n =
        std::snprintf(line, sizeof line, "%s\t%llx\t%llu\t%llu\t%llu\n", info.dli_fname,
                      (unsigned long long)(reinterpret_cast<uintptr_t>(kernel) -
                                           reinterpret_cast<uintptr_t>(info.dli_fbase)),
                      (unsigned long long)use.threads, (unsigned long long)use.shared_bytes,
                      (unsigned long long)use.launches);
    if (n > 0 && size_t(n) < sizeof line && ::write(fd, line, size_t(n)) != n)
      std::fprintf(stderr, "cudaemu: cannot write CUDAEMU_LAUNCH_LOG %s\n", log_path());
  }
  ::close(fd);
}

}  // namespace

void note_launch(const void* kernel, uint64_t threads, size_t shared_bytes) {
  if (log_path() == nullptr) return;
  static const bool registered = (std::atexit(write_log), true);
  (void)registered;
  KernelUse& use = uses()[kernel];
  use.threads = std::max(use.threads, threads);
  use.shared_bytes = std::max<uint64_t>(use.shared_bytes, shared_bytes);
  ++use.launches;
}

}  // namespace cudaemu
