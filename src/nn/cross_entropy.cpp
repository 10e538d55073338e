// logits is [N, V], targets is [N]
#include "nn/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/vecmath.h"
#include "nn/reduce.h"

namespace ecmoe::nn {

int64_t count_targets(const int* targets, int rows, int vocab) {
  int64_t count = 0;
  for (int r = 0; r < rows; ++r) {
    if (targets[r] != kIgnoreIndex && (targets[r] < 0 || targets[r] >= vocab))
      fail_bad_target(targets[r], r, vocab);
    count += targets[r] != kIgnoreIndex;
  }
  return count;
}

void fail_bad_target(int target, int row, int vocab) {
  fail("cross entropy: target ", target, " at row ", row, " is outside [0, ", vocab,
       ") and is not the ignore index ", kIgnoreIndex);
}

CrossEntropyResult cross_entropy_forward(float* logsumexp, const float* logits, const int* targets,
                                         int rows, int vocab) {
  CrossEntropyResult result;
  result.count = count_targets(targets, rows, vocab);
  std::vector<double> row_loss(rows, 0.0);
#pragma omp parallel
  {
    std::vector<float> shifted(vocab);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      if (targets[r] == kIgnoreIndex) {
        logsumexp[r] = 0.f;
        continue;
      }
      const float* z = logits + int64_t(r) * vocab;
      const float z_max = detail::max(z, vocab);
      for (int j = 0; j < vocab; ++j) shifted[j] = z[j] - z_max;
      vec_exp(shifted.data(), shifted.data(), vocab);
      logsumexp[r] = z_max + std::log(detail::sum(shifted.data(), vocab));
      row_loss[r] = double(logsumexp[r]) - double(z[targets[r]]);
    }
  }
  double total = 0;
  for (int r = 0; r < rows; ++r) total += row_loss[r];
  result.loss = result.count ? total / double(result.count) : 0.0;
  return result;
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const int* targets, int64_t count, float dloss, int rows, int vocab) {
  const float scale = count ? dloss / float(count) : 0.f;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    float* g = dlogits + int64_t(r) * vocab;
    if (targets[r] == kIgnoreIndex) {
      std::fill(g, g + vocab, 0.f);
      continue;
    }
    const float* z = logits + int64_t(r) * vocab;  // may equal g: read and write the same index
    for (int j = 0; j < vocab; ++j) g[j] = z[j] - logsumexp[r];
    vec_exp(g, g, vocab);  // softmax
    for (int j = 0; j < vocab; ++j) g[j] *= scale;
    g[targets[r]] -= scale;
  }
}

}  // namespace ecmoe::nn
