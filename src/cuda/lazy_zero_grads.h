// A training run's gradient buffer, zeroed lazily where an op overwrites a range whole.
//
// Each step starts by zeroing the gradients, and most ops then add into them. The expert layers'
// weight gradients (nearly all of a large MoE's parameters) are written once a step, by GEMMs that
// could as well write them as add to zeros. Reading and zeroing them is pure memory traffic: on
// `gpu-small`, 7.3 GB zeroed and 7.3 GB read again by beta-1 GEMMs a step.
//
// So the owner of the buffer (cuda/optimizer_device.h) attaches it, and an op about to write a
// range whole asks claim(). A range claimed for the first time is learned; from the next zero()
// on, it is left out of the memset and is "pending": logically zero. The first claim of a range
// in a step returns true, and the op writes every element as if it added to zeros (a beta-0
// GEMM; an expert without rows, a memset): a pending range, or a new one that this step's zero()
// zeroed. A second claim in the same step returns false (the op adds). Whatever is still pending
// is zeroed before anything reads or writes it otherwise: settle() (the optimizer's reads, which
// also end the step) and settle(p, bytes) (the backend's uploads, copies and downloads).
//
// The contract: a claimed range is written by its claimant alone, and every step begins with
// zero(). Every step, the first included, makes the same calls (a resumed run's bits are an
// uninterrupted one's). The values are those of adding to zeros, except that an element whose
// products sum to -0 stays -0, which no norm, clip or AdamW update tells apart from +0.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ecmoe::cuda {

class LazyZeroGrads {
 public:
  // The gradients [grads, grads + size); attaching forgets any ranges learned before.
  void attach(float* grads, int64_t size);
  void detach(const float* grads);  // if they are the attached ones
  bool attached(const float* grads) const { return grads != nullptr && grads == grads_; }
  // Queues the step's zeroing: everything but the learned ranges, which become pending.
  void zero(cudaStream_t stream);
  // An op will write [g, g + n) whole: true if it holds logical zeros (write every element, with
  // nothing added to it), false if the op must add to what is there (work queued on stream
  // before the op's makes that so).
  bool claim(float* g, int64_t n, cudaStream_t stream);
  // Zeroes the pending ranges (all, or those overlapping [p, p + bytes)) before they are used.
  void settle(cudaStream_t stream);
  void settle(const void* p, std::size_t bytes, cudaStream_t stream);
  // The learned ranges (for tests and the docs' counts): floats left to their writers.
  int64_t learned_floats() const;

 private:
  struct Range {
    float* begin;
    int64_t size;
    bool pending;
  };
  void zero_range(float* p, int64_t n, cudaStream_t stream) const;
  float* grads_ = nullptr;
  int64_t size_ = 0;
  std::vector<Range> ranges_;  // sorted by begin, disjoint
  bool zeroed_ = false;        // zero() has run, and settle() not since (the step's backward)
};

}  // namespace ecmoe::cuda
