// An exclusive lock on an output folder, so that two runs cannot write into one folder at once
// (one run's checkpoint beside another's config, torn metrics). flock(2) on <dir>/.ecmoe.lock:
// the kernel releases it when the process ends, however it ends, so a killed run leaves no stale
// lock. The holder writes its pid, host and command line into the file for the next one's error.
#pragma once
#include <string>

namespace ecmoe {

inline constexpr const char* kLockFile = ".ecmoe.lock";

class DirLock {
 public:
  DirLock() = default;
  // Locks `dir` (which must exist) or throws ecmoe::Error naming the holder. `what` says what is
  // locked, e.g. "output folder".
  DirLock(const std::string& dir, const std::string& what);
  ~DirLock();
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// An output folder made ready and claimed for one run, before any work: prepare_output_dir (named
// `option` in its errors, e.g. "--out"), then the lock (`what`: "output folder"). Held while the
// returned lock lives.
DirLock claim_output_dir(const std::string& dir, const std::string& option,
                         const std::string& what = "output folder");

}  // namespace ecmoe
