// Softmax cross-entropy over the last dimension with integer targets, mean over the counted
// positions; target kIgnoreIndex marks a position without loss (unmasked tokens in masked LM,
// padding).
#pragma once
#include <cstdint>

namespace ecmoe::nn {

inline constexpr int kIgnoreIndex = -1;

struct CrossEntropyResult {
  double loss = 0;    // mean over counted positions; 0 when there are none
  int64_t count = 0;  // positions whose target is not kIgnoreIndex
};

// logits: [rows, vocab]; targets: [rows], each in [0, vocab) or kIgnoreIndex;
// logsumexp: [rows], saved for the backward pass (0 at ignored rows).
// The loss is summed in double, rows in order: the same value at any thread count.
CrossEntropyResult cross_entropy_forward(float* logsumexp, const float* logits, const int* targets,
                                         int rows, int vocab);
// WRITES (does not accumulate) dlogits [rows, vocab] = dloss · (softmax − onehot) / count at
// counted rows and 0 at ignored rows: this is where the backward pass starts. dlogits may be the
// logits buffer itself (in place), which saves a [rows, vocab] buffer. count is the forward's
// for the mean's gradient (a part of a larger batch passes the whole batch's count).
void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const int* targets, int64_t count, float dloss, int rows, int vocab);

// The number of targets that are not kIgnoreIndex; throws on a target outside [0, vocab).
int64_t count_targets(const int* targets, int rows, int vocab);
// The one-line error count_targets gives for `target` at `row` (a device that checks its own).
[[noreturn]] void fail_bad_target(int target, int row, int vocab);

}  // namespace ecmoe::nn
