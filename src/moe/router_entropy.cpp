#include "moe/router_entropy.h"

#include <cmath>
#include <cstdint>

namespace ecmoe {

double router_entropy_sum(const float* probs, int n, int e) {
  double total = 0;
  for (int64_t j = 0; j < int64_t(n) * e; ++j)
    if (probs[j] > 0.f) total -= double(probs[j]) * std::log(double(probs[j]));
  return total;
}

}  // namespace ecmoe
