// bf16 GEMM (GemmProblem::precision = kBf16) against exact products, against the fp32 GEMM, the
// native kernel against the fallback (ECMOE_BF16_FALLBACK=1), and across thread counts.
//
// Tolerances, from bf16 rounding (unit roundoff u = 2^-8: 8 significand bits, round to nearest):
// each operand is a(1 + δ) with |δ| <= u, so each product is off by at most (2u + u²)|a||b|; the
// fp32 accumulation of k terms adds at most about k·2^-24·Σ|a||b| (the standard γ_k bound). So
//   |C_bf16 − C_exact| <= (2u + u² + (k + 2)·2^-24)·|alpha|·Σ_l |a_il||b_lj| + 2^-24·|beta·c|.
// Against the exact product of the ROUNDED operands only the accumulation term remains, which
// checks that the rounding is bf16's round-to-nearest-even and nothing coarser.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "core/rng.h"
#include "support/core/gemm_reference.h"

using namespace ecmoe;

namespace {

// Forces the fallback on or off for a scope.
class FallbackScope {
 public:
  explicit FallbackScope(bool on) { set_bf16_fallback(on); }
  ~FallbackScope() { set_bf16_fallback(false); }
};

float op_a(const GemmProblem& p, const float* a, int i, int l) {
  return p.trans_a ? a[int64_t(l) * p.lda + i] : a[int64_t(i) * p.lda + l];
}
float op_b(const GemmProblem& p, const float* b, int l, int j) {
  return p.trans_b ? b[int64_t(j) * p.ldb + l] : b[int64_t(l) * p.ldb + j];
}

struct Exact {
  std::vector<double> value;  // alpha·Σ a·b + beta·c0, in double
  std::vector<double> scale;  // |alpha|·Σ|a||b|
};

// With round_operands, the operands are first rounded to bf16.
Exact exact(const GemmProblem& p, const std::vector<float>& c0, bool round_operands) {
  Exact e{std::vector<double>(size_t(p.m) * p.n), std::vector<double>(size_t(p.m) * p.n)};
  for (int i = 0; i < p.m; ++i)
    for (int j = 0; j < p.n; ++j) {
      double s = 0, a_s = 0;
      for (int l = 0; l < p.k; ++l) {
        float x = op_a(p, p.a, i, l), y = op_b(p, p.b, l, j);
        if (round_operands) x = round_to_bf16(x), y = round_to_bf16(y);
        s += double(x) * y;
        a_s += std::abs(double(x) * y);
      }
      const size_t at = size_t(i) * p.n + j;
      e.value[at] = p.alpha * s + p.beta * double(c0[at]);
      e.scale[at] = std::abs(p.alpha) * a_s;
    }
  return e;
}

constexpr double kU = 1.0 / 256;          // bf16 unit roundoff, 2^-8
constexpr double kF32 = 1.0 / (1 << 24);  // fp32 unit roundoff, 2^-24

void expect_within(const std::vector<float>& c, const Exact& e, const std::vector<float>& c0,
                   const GemmProblem& p, double operand_rounding, const char* what) {
  for (size_t at = 0; at < c.size(); ++at) {
    const double tol = (operand_rounding + (p.k + 2) * kF32) * e.scale[at] +
                       2 * kF32 * std::abs(p.beta * c0[at]) + 1e-30;
    ASSERT_LE(std::abs(double(c[at]) - e.value[at]), tol)
        << what << " at " << at << " ta=" << p.trans_a << " tb=" << p.trans_b << " m=" << p.m
        << " n=" << p.n << " k=" << p.k;
  }
}

void check_shapes(bool fallback) {
  FallbackScope scope(fallback);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int m : {1, 7, 129})
        for (int n : {1, 9, 513})
          for (int k : {1, 5, 300}) {
            auto a = random_vec(size_t(m) * k, 1), b = random_vec(size_t(k) * n, 2);
            const auto c0 = random_vec(size_t(m) * n, 3);
            auto c = c0;
            GemmProblem p = make_gemm(ta, tb, m, n, k, a.data(), b.data(), c.data(), 0.5f, 2.f);
            p.precision = Precision::kBf16;
            gemm(p);
            expect_within(c, exact(p, c0, false), c0, p, 2 * kU + kU * kU, "vs exact");
            expect_within(c, exact(p, c0, true), c0, p, 0.0, "vs exact on rounded operands");
          }
}

}  // namespace

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.
  EXPECT_EQ(float_to_bf16(1.f + 1.f / 256), 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(float_to_bf16(1.f + 3.f / 256), 0x3f82);
  EXPECT_EQ(float_to_bf16(1.f + 1.f / 256 + 1.f / 65536), 0x3f81);  // above halfway: up
  EXPECT_EQ(float_to_bf16(-2.f), 0xc000);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to inf
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload sits in the low bits only must not become infinity.
  uint32_t bits = 0x7f800001u;
  float nan;
  std::memcpy(&nan, &bits, sizeof nan);
  EXPECT_TRUE(std::isnan(round_to_bf16(nan)));
  EXPECT_EQ(bf16_to_float(0x3f80), 1.f);
}

TEST(GemmBf16, NativeWithinBf16RoundingBound) { check_shapes(false); }

TEST(GemmBf16, FallbackWithinBf16RoundingBound) { check_shapes(true); }

// The fallback is the fp32 GEMM on the rounded operands, bit for bit (same tiles, same kernel).
TEST(GemmBf16, FallbackIsFp32GemmOfRoundedOperands) {
  FallbackScope scope(true);
  const int m = 300, n = 600, k = 200;
  auto a = random_vec(size_t(m) * k, 4), b = random_vec(size_t(k) * n, 5);
  std::vector<float> ar(a.size()), br(b.size());
  for (size_t i = 0; i < a.size(); ++i) ar[i] = round_to_bf16(a[i]);
  for (size_t i = 0; i < b.size(); ++i) br[i] = round_to_bf16(b[i]);
  std::vector<float> c(size_t(m) * n), ref(c.size()), plain(c.size());
  GemmProblem p = make_gemm(false, true, m, n, k, a.data(), b.data(), c.data());
  p.precision = Precision::kBf16;
  gemm(p);
  gemm(make_gemm(false, true, m, n, k, ar.data(), br.data(), ref.data()));
  gemm(make_gemm(false, true, m, n, k, a.data(), b.data(), plain.data()));
  EXPECT_EQ(0, std::memcmp(c.data(), ref.data(), c.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(c.data(), plain.data(), c.size() * sizeof(float)));  // it did round
}

// Native and fallback compute the same products of the same bf16 values; only the order of the
// fp32 sums differs, so they agree within twice the accumulation bound.
TEST(GemmBf16, NativeMatchesFallback) {
  if (!bf16_native_available()) GTEST_SKIP() << "no bf16 instructions on this CPU";
  const int m = 200, n = 700, k = 256;
  auto a = random_vec(size_t(m) * k, 6), b = random_vec(size_t(k) * n, 7);
  std::vector<float> native(size_t(m) * n), fallback(native.size());
  GemmProblem p = make_gemm(true, false, m, n, k, a.data(), b.data(), native.data());
  p.precision = Precision::kBf16;
  {
    FallbackScope scope(false);
    ASSERT_TRUE(bf16_native());
    gemm(p);
  }
  {
    FallbackScope scope(true);
    ASSERT_FALSE(bf16_native());
    p.c = fallback.data();
    gemm(p);
  }
  p.c = native.data();
  const Exact e = exact(p, std::vector<float>(native.size()), true);
  size_t differ = 0;
  for (size_t at = 0; at < native.size(); ++at) {
    ASSERT_LE(std::abs(native[at] - fallback[at]), 2 * (k + 2) * kF32 * e.scale[at]) << at;
    differ += native[at] != fallback[at];
  }
  EXPECT_GT(differ, 0u) << "the native kernel should not be the fallback";
}

// Operands given as bf16 copies (a_bf16, b_bf16) give the same bits as converting in the call.
TEST(GemmBf16, GivenBf16OperandsMatchConverted) {
  for (bool fallback : {false, true}) {
    FallbackScope scope(fallback);
    const int m = 130, n = 515, k = 64;
    auto a = random_vec(size_t(m) * k, 8), b = random_vec(size_t(k) * n, 9);
    Bf16Vec a16(a.size()), b16(b.size());
    convert_to_bf16(a16.data(), a.data(), int64_t(a.size()));
    convert_to_bf16(b16.data(), b.data(), int64_t(b.size()));
    std::vector<float> c1(size_t(m) * n), c2(c1.size());
    GemmProblem p = make_gemm(false, false, m, n, k, a.data(), b.data(), c1.data());
    p.precision = Precision::kBf16;
    gemm(p);
    p.a_bf16 = a16.data();
    p.b_bf16 = b16.data();
    p.a = p.b = nullptr;  // only the copies may be read
    p.c = c2.data();
    gemm(p);
    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float))) << fallback;
  }
}

TEST(GemmBf16, BitwiseIdenticalAcrossThreadCounts) {
  for (bool fallback : {false, true}) {
    FallbackScope scope(fallback);
    const int m = 1000, n = 1100, k = 300;
    for (bool ta : {false, true}) {
      auto a = random_vec(size_t(m) * k, 4), b = random_vec(size_t(k) * n, 5);
      std::vector<float> c1(size_t(m) * n), c2(c1.size());
      GemmProblem p = make_gemm(ta, false, m, n, k, a.data(), b.data(), c1.data());
      p.precision = Precision::kBf16;
      omp_set_num_threads(1);
      gemm(p);
      omp_set_num_threads(2);
      p.c = c2.data();
      gemm(p);
      EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)))
          << "fallback=" << fallback << " ta=" << ta;
    }
  }
}

// ECMOE_BF16_FALLBACK is read once (not at every GEMM call): setting it later changes nothing;
// set_bf16_fallback switches paths.
TEST(GemmBf16, FallbackEnvironmentReadOnce) {
  if (!bf16_native_available()) GTEST_SKIP() << "no bf16 instructions on this CPU";
  set_bf16_fallback(false);
  setenv("ECMOE_BF16_FALLBACK", "1", 1);
  EXPECT_TRUE(bf16_native());
  unsetenv("ECMOE_BF16_FALLBACK");
  set_bf16_fallback(true);
  EXPECT_FALSE(bf16_native());
  set_bf16_fallback(false);
  EXPECT_TRUE(bf16_native());
}

// A tile epilogue sees each element of C once, after its final value is written: here it copies
// the tile into another array, which must equal C bit for bit (fp32 and bf16, several tiles per
// dimension, 1 and 2 threads), and counts visits.
TEST(GemmEpilogue, EachTileOnceAfterItsGemm) {
  const int m = 300, n = 1100, k = 70;
  auto a = random_vec(size_t(m) * k, 8), b = random_vec(size_t(k) * n, 9);
  for (Precision precision : {Precision::kFp32, Precision::kBf16})
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> c(size_t(m) * n), copy(c.size(), -1.f);
      std::vector<int> visits(c.size(), 0);
      GemmProblem p = make_gemm(false, false, m, n, k, a.data(), b.data(), c.data());
      p.precision = precision;
      const TileEpilogue copy_tile = [&](int m0, int n0, int mm, int nn) {
        for (int i = m0; i < m0 + mm; ++i)
          for (int j = n0; j < n0 + nn; ++j) {
            copy[size_t(i) * n + j] = c[size_t(i) * n + j];
            ++visits[size_t(i) * n + j];
          }
      };
      p.epilogue = &copy_tile;
      gemm_batch(std::span<const GemmProblem>(&p, 1));
      EXPECT_EQ(0, std::memcmp(c.data(), copy.data(), c.size() * sizeof(float)))
          << int(precision) << " threads " << threads;
      EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), int64_t(visits.size()));
    }
}
