// Shared helpers for the nn kernel tests: random data, tolerance checks with a useful message,
// central finite differences on double-precision reference losses, thread-count switching.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"

namespace ecmoe::nn::test {

inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.f) {
  Rng rng(seed, 11);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * rng.normal(i);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Passes when every |actual − expected| <= abs_tol + rel_tol·|expected|. abs_tol is relative
// to the largest |expected| (so it scales with the tensor), plus a tiny floor for all-zero ones.
template <typename A, typename E>
::testing::AssertionResult all_close(const std::vector<A>& actual, const std::vector<E>& expected,
                                     double rel_tol, double abs_tol_of_max) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != expected size " << expected.size();
  double scale = 0;
  for (auto e : expected) scale = std::max(scale, std::abs(double(e)));
  const double abs_tol = abs_tol_of_max * scale + 1e-30;
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::abs(double(actual[i]) - double(expected[i]));
    const double allowed = abs_tol + rel_tol * std::abs(double(expected[i]));
    if (!(err <= allowed)) {  // also catches NaN
      if (bad++ == 0) first = i;
    }
    worst = std::max(worst, err);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.size() << " elements out of tolerance (rel " << rel_tol
         << ", abs " << abs_tol << "); first at " << first << ": " << actual[first] << " vs "
         << expected[first] << "; largest error " << worst;
}

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Σ w·out, the scalar loss whose gradient with respect to out is w.
inline double weighted_sum(const std::vector<double>& out, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += w[i] * out[i];
  return s;
}

// Central differences (L(x + h) − L(x − h)) / 2h for every element of x, perturbed in place and
// restored. In double precision with h = 1e-5 the truncation error (~h²·L''') and the rounding
// error (~1e-16·|L| / h) both stay near 1e-10, far below the tolerances the tests use.
inline std::vector<double> numeric_gradient(std::vector<double>& x,
                                            const std::function<double()>& loss, double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Runs f with the given OpenMP thread count, restoring the previous count afterwards.
template <typename F>
void with_threads(int threads, F&& f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(saved);
}

// Tolerances used throughout, with their reasons:
// fp32 kernel vs double reference, outputs of O(1): fp32 rounding over sums of <= a few hundred
// terms stays below ~1e-5 relative.
inline constexpr double kFloatRel = 1e-4, kFloatAbs = 1e-5;
// Analytic fp32 gradient vs double central differences: the fp32 rounding of the backward pass
// dominates; 1e-3 relative plus 1e-4 of the largest gradient.
inline constexpr double kGradRel = 1e-3, kGradAbs = 1e-4;
// Double reference backward vs double central differences: only the FD error (~1e-9) remains.
inline constexpr double kRefGradRel = 1e-6, kRefGradAbs = 1e-7;

}  // namespace ecmoe::nn::test
