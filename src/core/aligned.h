// 64-byte aligned float storage (one cache line, one AVX-512 register).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace ecmoe {

template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    const std::size_t bytes = ((n * sizeof(T) + kAlign - 1) / kAlign) * kAlign;
    void* p = std::aligned_alloc(kAlign, bytes == 0 ? kAlign : bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
};

using FloatVec = std::vector<float, AlignedAllocator<float>>;

}  // namespace ecmoe
