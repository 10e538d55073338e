#include "support/nn/cross_entropy_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ecmoe::nn {

CrossEntropyResult cross_entropy_forward_reference(const double* logits, const int* targets,
                                                   int rows, int vocab) {
  CrossEntropyResult result;
  result.count = count_targets(targets, rows, vocab);
  for (int r = 0; r < rows; ++r) {
    if (targets[r] == kIgnoreIndex) continue;
    const double* z = logits + int64_t(r) * vocab;
    const double z_max = *std::max_element(z, z + vocab);
    double total = 0;
    for (int j = 0; j < vocab; ++j) total += std::exp(z[j] - z_max);
    result.loss += z_max + std::log(total) - z[targets[r]];
  }
  if (result.count) result.loss /= double(result.count);
  return result;
}

void cross_entropy_backward_reference(double* dlogits, const double* logits, const int* targets,
                                      double dloss, int rows, int vocab) {
  const int64_t count = count_targets(targets, rows, vocab);
  for (int r = 0; r < rows; ++r) {
    double* g = dlogits + int64_t(r) * vocab;
    std::fill(g, g + vocab, 0.0);
    if (targets[r] == kIgnoreIndex) continue;
    const double* z = logits + int64_t(r) * vocab;
    const double z_max = *std::max_element(z, z + vocab);
    double total = 0;
    for (int j = 0; j < vocab; ++j) total += std::exp(z[j] - z_max);
    for (int j = 0; j < vocab; ++j)
      g[j] = dloss * (std::exp(z[j] - z_max) / total - (j == targets[r])) / double(count);
  }
}

}  // namespace ecmoe::nn
