// The router's logits (moe/router_logits.h): each logit the sequential sum over d that the slow
// reference below writes out, to the bit, whatever the token count, the expert count and the
// thread count (top-k decisions depend on these bits); the backward against the plain products.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/router_logits.h"
#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

// logits[t, i] = ((0 + x[t,0]·w[0,i]) + x[t,1]·w[1,i]) + ..., one token at a time.
std::vector<float> reference_logits(const std::vector<float>& x, const std::vector<float>& w, int n,
                                    int d, int e) {
  std::vector<float> out(size_t(n) * e, 0.f);
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < d; ++j) {
      const float xv = x[size_t(t) * d + j];
      for (int i = 0; i < e; ++i) out[size_t(t) * e + i] += xv * w[size_t(j) * e + i];
    }
  return out;
}

TEST(RouterLogits, EachLogitIsTheSequentialSumAtAnyThreadCount) {
  struct Shape {
    int n, d, e;
  };
  for (const Shape& s : {Shape{1, 5, 1}, Shape{7, 16, 8}, Shape{8, 32, 4}, Shape{9, 33, 64},
                         Shape{131, 64, 8}, Shape{64, 256, 3}}) {
    const auto x = random_normal(size_t(s.n) * s.d, 1);
    const auto w = random_normal(size_t(s.d) * s.e, 2, 0.3f);
    const auto expected = reference_logits(x, w, s.n, s.d, s.e);
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<float> got(expected.size(), -1.f);
      router_logits_forward(got.data(), x.data(), w.data(), s.n, s.d, s.e);
      for (size_t k = 0; k < got.size(); ++k)
        ASSERT_EQ(got[k], expected[k]) << "n " << s.n << " d " << s.d << " e " << s.e << " threads "
                                       << threads << " element " << k;
    }
  }
  omp_set_num_threads(2);
}

TEST(RouterLogits, BackwardAccumulatesThePlainProducts) {
  const int n = 13, d = 24, e = 5;
  const auto x = random_normal(size_t(n) * d, 3);
  const auto w = random_normal(size_t(d) * e, 4);
  const auto g = random_normal(size_t(n) * e, 5);
  std::vector<float> dx(size_t(n) * d, 1.f), dw(size_t(d) * e, -1.f);
  router_logits_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), n, d, e);
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < d; ++j) {
      double sum = 1.0;  // accumulated onto what was there
      for (int i = 0; i < e; ++i) sum += double(g[size_t(t) * e + i]) * w[size_t(j) * e + i];
      EXPECT_NEAR(dx[size_t(t) * d + j], sum, 1e-5) << t << " " << j;
    }
  for (int j = 0; j < d; ++j)
    for (int i = 0; i < e; ++i) {
      double sum = -1.0;
      for (int t = 0; t < n; ++t) sum += double(x[size_t(t) * d + j]) * g[size_t(t) * e + i];
      EXPECT_NEAR(dw[size_t(j) * e + i], sum, 1e-5) << j << " " << i;
    }
}

}  // namespace
