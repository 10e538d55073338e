#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nn/layernorm.h"
#include "nn_test_util.h"
#include "support/nn/layernorm_reference.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

struct Case {
  int rows, dim;
};
// dim 1 (variance 0: output = bias), odd sizes, one past a 16-lane block, and the model's width.
const Case kCases[] = {{1, 1}, {1, 5}, {3, 17}, {7, 64}, {5, 257}, {2, 256}};

struct Data {
  std::vector<float> inp, gain, bias, dout;
  Data(const Case& c, uint64_t seed)
      : inp(random_floats(size_t(c.rows) * c.dim, seed)),
        gain(random_floats(c.dim, seed + 1)),
        bias(random_floats(c.dim, seed + 2)),
        dout(random_floats(size_t(c.rows) * c.dim, seed + 3)) {
    for (auto& x : inp) x += 3.f;  // a mean far from 0 exercises the two-pass variance
  }
};

}  // namespace

TEST(LayerNorm, ForwardMatchesReferenceAndSavesStatistics) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " dim " << c.dim);
    Data d(c, 10);
    std::vector<float> out(d.inp.size()), mean(c.rows), rstd(c.rows);
    layernorm_forward(out.data(), mean.data(), rstd.data(), d.inp.data(), d.gain.data(),
                      d.bias.data(), c.rows, c.dim);
    std::vector<double> ref(out.size());
    auto inp = to_double(d.inp), gain = to_double(d.gain), bias = to_double(d.bias);
    layernorm_forward_reference(ref.data(), inp.data(), gain.data(), bias.data(), c.rows, c.dim);
    EXPECT_TRUE(all_close(out, ref, kFloatRel, kFloatAbs));
    for (int r = 0; r < c.rows; ++r) {
      double m = 0, v = 0;
      for (int i = 0; i < c.dim; ++i) m += inp[size_t(r) * c.dim + i] / c.dim;
      for (int i = 0; i < c.dim; ++i) v += std::pow(inp[size_t(r) * c.dim + i] - m, 2) / c.dim;
      EXPECT_NEAR(mean[r], m, 1e-5 * (1 + std::abs(m)));
      EXPECT_NEAR(rstd[r], 1 / std::sqrt(v + 1e-5), 1e-4 / std::sqrt(v + 1e-5));
    }
  }
}

// The backward pass accumulates: gradients start from non-zero values, which must be kept.
TEST(LayerNorm, BackwardMatchesReferenceAndAccumulates) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " dim " << c.dim);
    Data d(c, 20);
    std::vector<float> out(d.inp.size()), mean(c.rows), rstd(c.rows);
    layernorm_forward(out.data(), mean.data(), rstd.data(), d.inp.data(), d.gain.data(),
                      d.bias.data(), c.rows, c.dim);
    auto dinp = random_floats(d.inp.size(), 30), dgain = random_floats(c.dim, 31),
         dbias = random_floats(c.dim, 32);
    auto rdinp = to_double(dinp), rdgain = to_double(dgain), rdbias = to_double(dbias);
    layernorm_backward(dinp.data(), dgain.data(), dbias.data(), d.dout.data(), d.inp.data(),
                       d.gain.data(), mean.data(), rstd.data(), c.rows, c.dim);
    auto inp = to_double(d.inp), gain = to_double(d.gain), dout = to_double(d.dout);
    layernorm_backward_reference(rdinp.data(), rdgain.data(), rdbias.data(), dout.data(),
                                 inp.data(), gain.data(), c.rows, c.dim);
    EXPECT_TRUE(all_close(dinp, rdinp, kFloatRel, kFloatAbs));
    EXPECT_TRUE(all_close(dgain, rdgain, kFloatRel, kFloatAbs));
    EXPECT_TRUE(all_close(dbias, rdbias, kFloatRel, kFloatAbs));
  }
}

// L = Σ w·layernorm(x; gain, bias) in double; its central differences against both the fast
// kernel's gradients and the reference's.
TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  for (const Case& c : {Case{1, 1}, Case{3, 5}, Case{2, 19}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " dim " << c.dim);
    Data d(c, 40);
    auto inp = to_double(d.inp), gain = to_double(d.gain), bias = to_double(d.bias),
         w = to_double(d.dout);
    std::vector<double> out(inp.size());
    auto loss = [&] {
      layernorm_forward_reference(out.data(), inp.data(), gain.data(), bias.data(), c.rows, c.dim);
      return weighted_sum(out, w);
    };
    const auto n_inp = numeric_gradient(inp, loss), n_gain = numeric_gradient(gain, loss),
               n_bias = numeric_gradient(bias, loss);

    std::vector<double> r_inp(inp.size()), r_gain(c.dim), r_bias(c.dim);
    layernorm_backward_reference(r_inp.data(), r_gain.data(), r_bias.data(), w.data(), inp.data(),
                                 gain.data(), c.rows, c.dim);
    EXPECT_TRUE(all_close(r_inp, n_inp, kRefGradRel, kRefGradAbs));
    EXPECT_TRUE(all_close(r_gain, n_gain, kRefGradRel, kRefGradAbs));
    EXPECT_TRUE(all_close(r_bias, n_bias, kRefGradRel, kRefGradAbs));

    std::vector<float> fout(inp.size()), mean(c.rows), rstd(c.rows), f_inp(inp.size()),
        f_gain(c.dim), f_bias(c.dim);
    layernorm_forward(fout.data(), mean.data(), rstd.data(), d.inp.data(), d.gain.data(),
                      d.bias.data(), c.rows, c.dim);
    layernorm_backward(f_inp.data(), f_gain.data(), f_bias.data(), d.dout.data(), d.inp.data(),
                       d.gain.data(), mean.data(), rstd.data(), c.rows, c.dim);
    // dim 1: the true input gradient is 0 and the kernel's is rounding noise around it.
    EXPECT_TRUE(all_close(f_inp, n_inp, kGradRel, c.dim == 1 ? 1e-2 : kGradAbs));
    EXPECT_TRUE(all_close(f_gain, n_gain, kGradRel, kGradAbs));
    EXPECT_TRUE(all_close(f_bias, n_bias, kGradRel, kGradAbs));
  }
}

TEST(LayerNorm, BitwiseIdenticalAtOneAndTwoThreads) {
  const Case c{301, 80};
  Data d(c, 50);
  struct Result {
    std::vector<float> out, mean, rstd, dinp, dgain, dbias;
  };
  auto run = [&] {
    Result r{std::vector<float>(d.inp.size()), std::vector<float>(c.rows),
             std::vector<float>(c.rows),       std::vector<float>(d.inp.size()),
             std::vector<float>(c.dim),        std::vector<float>(c.dim)};
    layernorm_forward(r.out.data(), r.mean.data(), r.rstd.data(), d.inp.data(), d.gain.data(),
                      d.bias.data(), c.rows, c.dim);
    layernorm_backward(r.dinp.data(), r.dgain.data(), r.dbias.data(), d.dout.data(), d.inp.data(),
                       d.gain.data(), r.mean.data(), r.rstd.data(), c.rows, c.dim);
    return r;
  };
  Result one, two;
  with_threads(1, [&] { one = run(); });
  with_threads(2, [&] { two = run(); });
  EXPECT_TRUE(bitwise_equal(one.out, two.out));
  EXPECT_TRUE(bitwise_equal(one.mean, two.mean));
  EXPECT_TRUE(bitwise_equal(one.rstd, two.rstd));
  EXPECT_TRUE(bitwise_equal(one.dinp, two.dinp));
  EXPECT_TRUE(bitwise_equal(one.dgain, two.dgain));
  EXPECT_TRUE(bitwise_equal(one.dbias, two.dbias));
}
