// dot_fixed (core/vecmath.h) against the exact dot product in double. It sums 16 lanes of about
// n/16 products each, then adds the lanes in a 4-level tree: each product passes through at most
// ceil(n/16) + 4 fp32 roundings (one more for a fused or separate multiply), so
// |error| <= gamma_m · Σ|a_i·b_i| with m = ceil(n/16) + 5 and gamma_m = m·u / (1 − m·u),
// u = 2^-24. The result must not depend on the thread count (it has no threads) nor on where the
// arrays start (unaligned pointers give the same bits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "core/vecmath.h"

using namespace ecmoe;

TEST(DotFixed, WithinTheDerivedBoundOfTheExactSum) {
  constexpr double u = 1.0 / (1 << 24);
  for (int n : {0, 1, 3, 15, 16, 17, 255, 256, 1000, 4099}) {
    const Rng rng(uint64_t(n), 1);
    std::vector<float> a(size_t(n) + 1), b(size_t(n) + 1);
    for (int i = 0; i <= n; ++i) a[i] = rng.normal(2 * i), b[i] = rng.normal(2 * i + 1);
    double exact = 0, scale = 0;
    for (int i = 0; i < n; ++i) {
      exact += double(a[i]) * b[i];
      scale += std::abs(double(a[i]) * b[i]);
    }
    const double m = std::ceil(n / 16.0) + 5, gamma = m * u / (1 - m * u);
    const float got = dot_fixed(a.data(), b.data(), n);
    EXPECT_LE(std::abs(double(got) - exact), gamma * scale + 1e-30) << "n " << n;
    // The same values one float further into their buffers: the same bits.
    std::vector<float> a1(a.size() + 1), b1(b.size() + 1);
    std::memcpy(a1.data() + 1, a.data(), sizeof(float) * n);
    std::memcpy(b1.data() + 1, b.data(), sizeof(float) * n);
    const float shifted = dot_fixed(a1.data() + 1, b1.data() + 1, n);
    EXPECT_EQ(0, std::memcmp(&got, &shifted, sizeof(float))) << "n " << n;
  }
}
