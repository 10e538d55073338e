// CUDAEMU_PERTURB=1: the rounding a GPU may legally do differently from the host. Inside kernels,
// expf and erff move up to 2 units in the last place away from glibc's result and logf up to 1
// (CUDA's documented maximum errors; which way and how far is a hash of the argument, so runs
// repeat). cuBLAS sums k in reversed tiles of 32 instead of eight interleaved partial sums, and
// WMMA's mma_sync adds its products pairwise before the accumulator instead of one by one. A test
// that passes both with and without it does not depend on the host's rounding of these.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "internal.h"

namespace cudaemu {
namespace {

uint32_t mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}

// r moved |steps| ulps, by an amount that the argument's bits choose in [-max_ulps, max_ulps].
float move(float r, float x, uint32_t salt, int max_ulps) {
  if (!perturb() || detail::tl_fiber == nullptr || !std::isfinite(r) || r == 0.f) return r;
  const int steps = int(mix(to_bits(x) ^ salt) % uint32_t(2 * max_ulps + 1)) - max_ulps;
  for (int i = 0; i < steps; ++i) r = std::nextafter(r, INFINITY);
  for (int i = 0; i > steps; --i) r = std::nextafter(r, -INFINITY);
  return r;
}

bool& perturb_flag() {
  static bool on = [] {
    const char* v = std::getenv("CUDAEMU_PERTURB");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

}  // namespace

bool perturb() { return perturb_flag(); }
void set_perturb(bool on) { perturb_flag() = on; }

float device_expf(float x) { return x == 0.f ? 1.f : move((::expf)(x), x, 0x1u, 2); }
float device_logf(float x) { return x == 1.f ? 0.f : move((::logf)(x), x, 0x2u, 1); }
float device_erff(float x) {
  const float r = move((::erff)(x), x, 0x3u, 2);
  return std::fmin(1.f, std::fmax(-1.f, r));  // CUDA's erff stays in [-1, 1]
}

}  // namespace cudaemu
