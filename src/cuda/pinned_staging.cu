#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/pinned_staging.h"

namespace ecmoe::cuda {

namespace {

// Slots of one size (64 KiB, 128 KiB, ... up to kStagedBytesMax), used in turn: a ring.
class SlotRing {
 public:
  explicit SlotRing(std::size_t slot_bytes) : slot_bytes_(slot_bytes) {}
  SlotRing(const SlotRing&) = delete;
  SlotRing& operator=(const SlotRing&) = delete;
  ~SlotRing() {
    for (const Slot& s : slots_) {  // at exit: errors have nowhere to go
      if (s.in_use) cudaEventSynchronize(s.done);
      if (s.host) cudaFreeHost(s.host);
      if (s.done) cudaEventDestroy(s.done);
    }
  }

  void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
    Slot& s = next_slot();
    if (!s.done) ECMOE_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    if (!s.host) ECMOE_CUDA_CHECK(cudaMallocHost(&s.host, slot_bytes_));
    if (s.in_use) ECMOE_CUDA_CHECK(cudaEventSynchronize(s.done));  // its last copy has been read
    s.in_use = false;
    std::memcpy(s.host, src, bytes);
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream));
    ECMOE_CUDA_CHECK(cudaEventRecord(s.done, stream));
    s.in_use = true;
  }

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
    bool in_use = false;  // a copy from it was queued and `done` recorded after it
  };

  // The slot to write: the oldest, unless the device has not read it yet; then a new slot goes in
  // its place (up to 64 MiB a ring, at least 8 slots), so that the ring grows to the uploads a
  // step keeps in flight (a step of a many-layer model makes hundreds) and the host never waits.
  Slot& next_slot() {
    const std::size_t max_slots = std::max<std::size_t>(8, (std::size_t(64) << 20) / slot_bytes_);
    if (next_ >= slots_.size()) next_ = 0;
    if (slots_.empty() ||
        (slots_.size() < max_slots && slots_[next_].in_use && pending(slots_[next_].done)))
      slots_.insert(slots_.begin() + std::ptrdiff_t(next_), Slot{});
    return slots_[next_++];
  }
  // Whether the device has yet to reach `done` (cudaErrorNotReady is no failure: cleared).
  static bool pending(cudaEvent_t done) {
    const cudaError_t e = cudaEventQuery(done);
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return true;
    }
    ECMOE_CUDA_CHECK(e);
    return false;
  }

  std::size_t slot_bytes_;
  std::deque<Slot> slots_;  // insert keeps the others where they are: no reference is held
  std::size_t next_ = 0;
};

// A ring per power-of-two size: a slot is never reallocated (cudaFreeHost waits for the device).
class PinnedStaging {
 public:
  void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::size_t ring = 0;
    while ((kSmallest << ring) < bytes) ++ring;
    while (rings_.size() <= ring)
      rings_.push_back(std::make_unique<SlotRing>(kSmallest << rings_.size()));
    rings_[ring]->upload(dst, src, bytes, stream);
  }

 private:
  static constexpr std::size_t kSmallest = std::size_t(64) << 10;
  std::vector<std::unique_ptr<SlotRing>> rings_;
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
