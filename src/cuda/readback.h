// A forward's few results (routing counts, k-th scores, the auxiliary losses' sums) copied to the
// host together: each add() queues a device-to-host copy into one pinned buffer, record() marks
// the end of the set, and wait() blocks on that mark once. A model forwards all its layers before
// it waits (MoeLayer::forward_async / finish), so a step waits for the device once instead of at
// every value of every layer.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace ecmoe::cuda {

class Readback {
 public:
  Readback() = default;
  Readback(const Readback&) = delete;
  Readback& operator=(const Readback&) = delete;
  ~Readback();

  // Starts a new set of at most `bytes` in all (each add rounds its size up to 16 bytes). Waits
  // for the last set's copies first (recorded or not), so the buffer is free to be written (or
  // regrown).
  void begin(std::size_t bytes);
  // Queues a copy of `count` elements from src (device) on `stream`; returns where they will be,
  // for at() after wait().
  template <typename T>
  std::size_t add(const T* src, std::size_t count, cudaStream_t stream) {
    return add_bytes(src, count * sizeof(T), stream);
  }
  void record(cudaStream_t stream);  // after the set's last add
  void wait();                       // until the recorded copies are done
  template <typename T>
  const T* at(std::size_t offset) const {
    return reinterpret_cast<const T*>(host_ + offset);
  }

 private:
  std::size_t add_bytes(const void* src, std::size_t bytes, cudaStream_t stream);
  unsigned char* host_ = nullptr;
  std::size_t capacity_ = 0, used_ = 0;
  cudaEvent_t done_ = nullptr;
  bool unrecorded_ = false;  // copies were added since the last record()
  cudaStream_t last_stream_ = nullptr;
  bool pending_ = false;  // a set was recorded and not yet waited for
};

}  // namespace ecmoe::cuda
