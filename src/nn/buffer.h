// An array in a backend's memory (nn/backend.h): the model's activations and index arrays, so
// that the same model code keeps them on the CPU or on a device. Move-only; it grows but never
// shrinks, and resizing to a size it already has is free, so a pointer taken after one forward's
// resize stays valid until the next (the MoE layer keeps its input's).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/grown_capacity.h"
#include "nn/backend.h"

namespace ecmoe::nn {

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_;
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Makes the buffer hold n elements in `be`'s memory. Contents are kept only when it neither
  // grows past its capacity nor changes backend: callers write before they read. It grows as
  // core/grown_capacity.h says.
  void resize(Backend& be, int64_t n) {
    reserve(be, n);
    size_ = n;
  }
  // Room for n elements in `be`'s memory (where it reallocates, contents are lost and the size is
  // 0 until the next resize): a buffer whose size varies from batch to batch starts with room above
  // its first size (the loss head's counted rows).
  void reserve(Backend& be, int64_t n) {
    ECMOE_CHECK(n >= 0, "buffer: negative size ", n);
    if (&be != be_) reset();
    be_ = &be;
    if (n > capacity_) {
      const int64_t grown = grown_capacity(capacity_, n);
      if (ptr_) be_->release(ptr_);
      ptr_ = nullptr;
      capacity_ = 0;
      size_ = 0;
      ptr_ = static_cast<T*>(be_->allocate(std::size_t(grown) * sizeof(T)));
      capacity_ = grown;
    }
  }
  // resize to host.size(), then copy the host elements in.
  void upload(Backend& be, const std::vector<T>& host) {
    resize(be, int64_t(host.size()));
    be.upload(ptr_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(static_cast<std::size_t>(size_));
    if (size_) be_->download(host.data(), ptr_, host.size() * sizeof(T));
    return host;
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  Backend* backend() const { return be_; }

 private:
  void reset() noexcept {
    if (ptr_) be_->release(ptr_);
    ptr_ = nullptr;
    size_ = capacity_ = 0;
  }
  Backend* be_ = nullptr;
  T* ptr_ = nullptr;
  int64_t size_ = 0, capacity_ = 0;
};

}  // namespace ecmoe::nn
