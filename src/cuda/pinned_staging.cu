#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>

#include "cuda/cuda_check.h"
#include "cuda/pinned_staging.h"

namespace ecmoe::cuda {

namespace {

class PinnedStaging {
 public:
  ~PinnedStaging() {
    for (Slot& s : slots_) {  // at exit: errors have nowhere to go
      if (s.in_use) cudaEventSynchronize(s.done);
      if (s.host) cudaFreeHost(s.host);
      if (s.done) cudaEventDestroy(s.done);
    }
  }

  void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
    const std::lock_guard<std::mutex> lock(mutex_);
    Slot& s = slots_[next_];
    next_ = (next_ + 1) % slots_.size();
    if (!s.done) ECMOE_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    if (s.in_use) ECMOE_CUDA_CHECK(cudaEventSynchronize(s.done));  // its last copy has been read
    s.in_use = false;
    if (bytes > s.capacity) {
      if (s.host) ECMOE_CUDA_CHECK(cudaFreeHost(s.host));
      s.host = nullptr;
      s.capacity = 0;
      const std::size_t capacity = std::max<std::size_t>(bytes, 64 << 10);
      ECMOE_CUDA_CHECK(cudaMallocHost(&s.host, capacity));
      s.capacity = capacity;
    }
    std::memcpy(s.host, src, bytes);
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream));
    ECMOE_CUDA_CHECK(cudaEventRecord(s.done, stream));
    s.in_use = true;
  }

 private:
  struct Slot {
    void* host = nullptr;
    std::size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool in_use = false;  // a copy from it was queued and `done` recorded after it
  };
  std::array<Slot, 16> slots_{};
  std::size_t next_ = 0;
  std::mutex mutex_;
};

}  // namespace

void upload_async(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  if (bytes > kStagedBytesMax) {
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return;
  }
  static PinnedStaging staging;
  staging.upload(dst, src, bytes, stream);
}

}  // namespace ecmoe::cuda
