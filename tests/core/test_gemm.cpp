#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
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

// row_stable: each row of C has the same bits whatever m is (a decoder's expert GEMMs, whose row
// count depends on later tokens, docs/causal.md), in fp32 and both bf16 paths, with beta and with
// an epilogue that sees each real element once. Without it, oneDNN's AVX2 sgemm gives rows of a
// 1-3 row remainder, and every row of a small problem, other bits.
TEST(Gemm, RowStableRowsDoNotDependOnTheRowCount) {
  const int max_m = 300, k = 64;
  struct Path {
    Precision precision;
    bool fallback;
  };
  std::vector<Path> paths = {{Precision::kFp32, false}, {Precision::kBf16, true}};
  if (bf16_native_available()) paths.push_back({Precision::kBf16, false});
  for (const Path& path : paths)
    for (int n : {48, 600})
      for (bool tb : {false, true})
        for (float beta : {0.f, 0.5f}) {
          set_bf16_fallback(path.fallback);
          const auto a = random_vec(size_t(max_m) * k, 6), b = random_vec(size_t(k) * n, 7);
          const auto c0 = random_vec(size_t(max_m) * n, 8);
          auto run = [&](int m) {
            std::vector<float> c(c0.begin(), c0.begin() + int64_t(m) * n);
            std::vector<int> visits(c.size(), 0);
            const TileEpilogue count = [&](int m0, int n0, int mm, int nn) {
              for (int i = m0; i < m0 + mm; ++i)
                for (int j = n0; j < n0 + nn; ++j) ++visits[size_t(i) * n + j];
            };
            GemmProblem p = make_gemm(false, tb, m, n, k, a.data(), b.data(), c.data(), beta);
            p.precision = path.precision;
            p.row_stable = true;
            p.epilogue = &count;
            gemm(p);
            for (int v : visits) EXPECT_EQ(v, 1) << "m=" << m;
            return c;
          };
          const std::vector<float> full = run(max_m);
          // The same problem without row_stable, as the precision computes it: the same values
          // up to the order of the fp32 sums in the last, partial tile.
          std::vector<float> plain(c0.begin(), c0.end());
          GemmProblem q = make_gemm(false, tb, max_m, n, k, a.data(), b.data(), plain.data(), beta);
          q.precision = path.precision;
          gemm(q);
          for (size_t i = 0; i < plain.size(); ++i)
            ASSERT_NEAR(full[i], plain[i], 1e-3 * (1 + std::abs(plain[i]))) << i;
          EXPECT_EQ(0, std::memcmp(full.data(), plain.data(), 256 * n * sizeof(float)))
              << "whole tiles are computed as without row_stable";
          for (int m = 1; m < max_m; ++m) {
            const std::vector<float> c = run(m);
            for (int i = 0; i < m; ++i)
              ASSERT_EQ(0, std::memcmp(&c[size_t(i) * n], &full[size_t(i) * n], n * sizeof(float)))
                  << "row " << i << " of m=" << m << " (n=" << n << " tb=" << tb << " beta=" << beta
                  << " bf16=" << (path.precision == Precision::kBf16)
                  << " fallback=" << path.fallback << ")";
          }
        }
  set_bf16_fallback(false);
}

// Inside a GemmRowsAsGiven scope (one-token decoding) row_stable problems run as given: the
// same bits as without row_stable, at any m.
TEST(Gemm, RowsAsGivenScopeSkipsThePadding) {
  const int n = 40, k = 32;
  const auto a = random_vec(size_t(130) * k, 9), b = random_vec(size_t(k) * n, 10);
  for (int m : {1, 2, 3, 7, 130}) {
    std::vector<float> stable(size_t(m) * n), plain(stable.size());
    GemmProblem p = make_gemm(false, false, m, n, k, a.data(), b.data(), stable.data());
    GemmProblem q = p;
    q.c = plain.data();
    q.row_stable = false;
    gemm(q);
    {
      GemmRowsAsGiven scope;
      gemm(p);
    }
    EXPECT_EQ(0, std::memcmp(stable.data(), plain.data(), stable.size() * sizeof(float))) << m;
  }
}
