#include "cuda/lazy_zero_grads.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>

#include "cuda/cuda_check.h"

namespace ecmoe::cuda {

namespace {

// As addresses: p may lie in another allocation, which pointers may not be compared with.
uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

void LazyZeroGrads::attach(float* grads, int64_t size) {
  grads_ = grads;
  size_ = size;
  ranges_.clear();
  zeroed_ = false;
}

void LazyZeroGrads::detach(const float* grads) {
  if (attached(grads)) attach(nullptr, 0);
}

void LazyZeroGrads::zero_range(float* p, int64_t n, cudaStream_t stream) const {
  if (n > 0) ECMOE_CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(n) * sizeof(float), stream));
}

void LazyZeroGrads::zero(cudaStream_t stream) {
  float* at = grads_;
  for (Range& r : ranges_) {
    zero_range(at, r.begin - at, stream);
    at = r.begin + r.size;
    r.pending = true;
  }
  zero_range(at, grads_ + size_ - at, stream);
  zeroed_ = true;
}

bool LazyZeroGrads::claim(float* g, int64_t n, cudaStream_t stream) {
  const uintptr_t a = address(g), begin = address(grads_);
  if (grads_ == nullptr || n <= 0 || a < begin ||
      a + uintptr_t(n) * sizeof(float) > begin + uintptr_t(size_) * sizeof(float))
    return false;  // not the training gradients: add, as always
  const auto next = std::lower_bound(ranges_.begin(), ranges_.end(), g,
                                     [](const Range& r, const float* p) { return r.begin < p; });
  if (next != ranges_.end() && next->begin == g && next->size == n) {
    const bool zeros = next->pending;
    next->pending = false;
    return zeros;
  }
  // Learned only if it overlaps no other range: a range has one writer, which writes all of it.
  const bool clear_after = next == ranges_.end() || g + n <= next->begin;
  const bool clear_before =
      next == ranges_.begin() || std::prev(next)->begin + std::prev(next)->size <= g;
  if (clear_after && clear_before) {
    ranges_.insert(next, Range{g, n, false});
    // Zeroed by this step's zero(), and written by its claimant alone: zeros, as from now on.
    return zeroed_;
  }
  settle(g, size_t(n) * sizeof(float), stream);  // part of a learned range: zeros to add to
  return false;
}

void LazyZeroGrads::settle(cudaStream_t stream) {
  zeroed_ = false;  // the step's gradients are complete: a range new after this was not zeroed
  for (Range& r : ranges_)
    if (r.pending) {
      zero_range(r.begin, r.size, stream);
      r.pending = false;
    }
}

void LazyZeroGrads::settle(const void* p, std::size_t bytes, cudaStream_t stream) {
  const uintptr_t a = address(p);
  for (Range& r : ranges_)
    if (r.pending && a < address(r.begin + r.size) && a + bytes > address(r.begin)) {
      zero_range(r.begin, r.size, stream);
      r.pending = false;
    }
}

int64_t LazyZeroGrads::learned_floats() const {
  int64_t n = 0;
  for (const Range& r : ranges_) n += r.size;
  return n;
}

}  // namespace ecmoe::cuda
