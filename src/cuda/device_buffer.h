// DeviceVec<T>: an array in GPU memory that owns its allocation (cudaMalloc/cudaFree), with copies
// to and from host vectors on the backend's stream. resize keeps nothing: device buffers are
// scratch or are written whole by the op that fills them.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "core/grown_capacity.h"
#include "cuda/cuda_check.h"
#include "cuda/pinned_staging.h"

namespace ecmoe::cuda {

template <typename T>
class DeviceVec {
 public:
  DeviceVec() = default;
  explicit DeviceVec(size_t n) { resize(n); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  DeviceVec(DeviceVec&& o) noexcept { swap(o); }
  DeviceVec& operator=(DeviceVec&& o) noexcept {
    DeviceVec(std::move(o)).swap(*this);
    return *this;
  }
  ~DeviceVec() {
    if (data_) cudaFree(data_);
  }
  void swap(DeviceVec& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  // n elements; reallocates (contents lost) only when n exceeds the capacity.
  void resize(size_t n) {
    reserve(n);
    size_ = n;
  }
  // Room for n elements without changing the size (contents lost if it reallocates): a buffer
  // that grows a little at a time (a KV cache's scores) reserves ahead of its size. It grows as
  // core/grown_capacity.h says.
  void reserve(size_t n) {
    if (n <= capacity_) return;
    const size_t grown = grown_capacity(capacity_, n);
    if (data_) ECMOE_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    capacity_ = 0;
    size_ = 0;
    ECMOE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), grown * sizeof(T)));
    capacity_ = grown;
  }
  size_t capacity() const { return capacity_; }
  void release() { DeviceVec().swap(*this); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t bytes() const { return size_ * sizeof(T); }

  // Host -> device (resizes to the host data), asynchronous on `stream` through pinned staging
  // (cuda/pinned_staging.h): the host data may change as soon as upload returns.
  void upload(std::span<const T> host, cudaStream_t stream) {
    resize(host.size());
    upload_async(data_, host.data(), host.size_bytes(), stream);
  }
  // Device -> host; waits for the stream.
  std::vector<T> download(cudaStream_t stream) const {
    std::vector<T> host(size_);
    if (size_ > 0)
      ECMOE_CUDA_CHECK(
          cudaMemcpyAsync(host.data(), data_, bytes(), cudaMemcpyDeviceToHost, stream));
    ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    return host;
  }
  void zero(cudaStream_t stream) {
    if (size_ > 0) ECMOE_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(), stream));
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace ecmoe::cuda
