#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/gemm.h"
#include "core/rng.h"
#include "support/core/gemm_reference.h"

using namespace ecmoe;

// Every transpose combination and awkward sizes (1, 7, tile+1) against the reference.
TEST(Gemm, MatchesReferenceOnAwkwardShapes) {
  const int sizes[] = {1, 3, 7, 129, 513};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int m : sizes)
        for (int n : {1, 7, 513})
          for (int k : {1, 5, 64}) {
            auto a = random_vec(size_t(m) * k, 1), b = random_vec(size_t(k) * n, 2);
            auto c = random_vec(size_t(m) * n, 3), ref = c;
            auto p = make_gemm(ta, tb, m, n, k, a.data(), b.data(), c.data(), 0.5f, 2.f);
            gemm(p);
            p.c = ref.data();
            gemm_reference(p);
            for (size_t i = 0; i < c.size(); ++i)
              ASSERT_NEAR(c[i], ref[i], 1e-4 * (1 + std::abs(ref[i])))
                  << "ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n << " k=" << k;
          }
}

TEST(Gemm, ZeroDepthScalesC) {
  std::vector<float> c = {1, 2, 3, 4};
  auto p = make_gemm(false, false, 2, 2, 0, nullptr, nullptr, c.data(), 0.5f);
  gemm(p);
  EXPECT_FLOAT_EQ(c[3], 2.f);
}

TEST(Gemm, BitwiseIdenticalAcrossThreadCounts) {
  const int m = 1000, n = 1100, k = 300;
  for (bool ta : {false, true}) {
    auto a = random_vec(size_t(m) * k, 4), b = random_vec(size_t(k) * n, 5);
    std::vector<float> c1(size_t(m) * n), c2(c1.size());
    omp_set_num_threads(1);
    gemm(make_gemm(ta, false, m, n, k, a.data(), b.data(), c1.data()));
    omp_set_num_threads(2);
    gemm(make_gemm(ta, false, m, n, k, a.data(), b.data(), c2.data()));
    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
  }
}
