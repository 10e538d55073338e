// Counter-based random numbers: value i of stream s under seed k is a pure function of (k, s, i),
// so parallel loops and resumed runs draw exactly the same numbers.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

// Compiled by nvcc (the CUDA backend draws the router's jitter on the GPU), the integer draws and
// uniform() are device functions too, giving the same bits there.

namespace ecmoe {

ECMOE_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  ECMOE_HOST_DEVICE Rng(uint64_t seed, uint64_t stream)
      : key_(mix64(seed ^ mix64(stream + 0x51ed27ULL))) {}
  ECMOE_HOST_DEVICE uint64_t bits(uint64_t index) const { return mix64(key_ ^ mix64(index)); }
  // Uniform in [0, 1) with 24 random bits.
  ECMOE_HOST_DEVICE float uniform(uint64_t index) const {
    return float(bits(index) >> 40) * (1.0f / 16777216.0f);
  }
  // Standard normal by Box-Muller on two independent draws.
  float normal(uint64_t index) const {
    const double u1 = (double(bits(2 * index) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    const double u2 = double(bits(2 * index + 1) >> 11) * (1.0 / 9007199254740992.0);
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  uint64_t below(uint64_t index, uint64_t bound) const { return bits(index) % bound; }

 private:
  uint64_t key_;
};

}  // namespace ecmoe
