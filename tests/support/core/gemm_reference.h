#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/gemm.h"
#include "core/rng.h"

namespace ecmoe {

// Slow, obvious reference of gemm() (double accumulation) for tests.
void gemm_reference(const GemmProblem& p);

// n standard-normal values of the counter-based stream (seed, 7): GEMM operands for tests.
inline std::vector<float> random_vec(size_t n, uint64_t seed) {
  const Rng rng(seed, 7);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = rng.normal(i);
  return v;
}

}  // namespace ecmoe
