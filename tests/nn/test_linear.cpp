#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/linear.h"
#include "nn/residual.h"
#include "nn/tied_output.h"
#include "nn_test_util.h"
#include "support/nn/linear_reference.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

// Ones, odd sizes, and sizes one past the GEMM's output tiles (128 rows, 512 columns).
const LinearShape kShapes[] = {{1, 1, 1}, {3, 5, 7}, {129, 17, 33}, {4, 31, 513}, {2, 64, 16}};

std::string describe(const LinearShape& s) {
  return "rows " + std::to_string(s.rows) + " in " + std::to_string(s.in_dim) + " out " +
         std::to_string(s.out_dim);
}

struct Data {
  std::vector<float> inp, weight, bias, dout;
  Data(const LinearShape& s, uint64_t seed)
      : inp(random_floats(size_t(s.rows) * s.in_dim, seed)),
        weight(random_floats(size_t(s.in_dim) * s.out_dim, seed + 1, 0.3f)),
        bias(random_floats(s.out_dim, seed + 2)),
        dout(random_floats(size_t(s.rows) * s.out_dim, seed + 3)) {}
};

// The token table E [vocab, dim] is the transpose of a linear layer's W [dim, vocab].
std::vector<double> transpose(const std::vector<double>& m, int rows, int cols) {
  std::vector<double> t(m.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[size_t(c) * rows + r] = m[size_t(r) * cols + c];
  return t;
}

}  // namespace

TEST(Linear, ForwardMatchesReferenceWithAndWithoutBias) {
  for (const auto& s : kShapes)
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(describe(s) + (with_bias ? " bias" : " no bias"));
      Data d(s, 1);
      std::vector<float> out(size_t(s.rows) * s.out_dim, 123.f);  // stale contents are overwritten
      linear_forward(out.data(), d.inp.data(), d.weight.data(), with_bias ? d.bias.data() : nullptr,
                     s);
      auto inp = to_double(d.inp), weight = to_double(d.weight), bias = to_double(d.bias);
      std::vector<double> ref(out.size());
      linear_forward_reference(ref.data(), inp.data(), weight.data(),
                               with_bias ? bias.data() : nullptr, s);
      EXPECT_TRUE(all_close(out, ref, kFloatRel, kFloatAbs));
    }
}

TEST(Linear, BackwardMatchesReferenceAndAccumulates) {
  for (const auto& s : kShapes) {
    SCOPED_TRACE(describe(s));
    Data d(s, 2);
    auto dinp = random_floats(d.inp.size(), 20), dweight = random_floats(d.weight.size(), 21),
         dbias = random_floats(d.bias.size(), 22);
    auto r_dinp = to_double(dinp), r_dweight = to_double(dweight), r_dbias = to_double(dbias);
    linear_backward(dinp.data(), dweight.data(), dbias.data(), d.dout.data(), d.inp.data(),
                    d.weight.data(), s);
    auto inp = to_double(d.inp), weight = to_double(d.weight), dout = to_double(d.dout);
    linear_backward_reference(r_dinp.data(), r_dweight.data(), r_dbias.data(), dout.data(),
                              inp.data(), weight.data(), s);
    EXPECT_TRUE(all_close(dinp, r_dinp, kFloatRel, kFloatAbs));
    EXPECT_TRUE(all_close(dweight, r_dweight, kFloatRel, kFloatAbs));
    EXPECT_TRUE(all_close(dbias, r_dbias, kFloatRel, kFloatAbs));
  }
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  const LinearShape s{3, 4, 5};
  Data d(s, 3);
  auto inp = to_double(d.inp), weight = to_double(d.weight), bias = to_double(d.bias),
       w = to_double(d.dout);
  std::vector<double> out(w.size());
  auto loss = [&] {
    linear_forward_reference(out.data(), inp.data(), weight.data(), bias.data(), s);
    return weighted_sum(out, w);
  };
  const auto n_inp = numeric_gradient(inp, loss), n_weight = numeric_gradient(weight, loss),
             n_bias = numeric_gradient(bias, loss);
  std::vector<double> r_inp(inp.size()), r_weight(weight.size()), r_bias(bias.size());
  linear_backward_reference(r_inp.data(), r_weight.data(), r_bias.data(), w.data(), inp.data(),
                            weight.data(), s);
  EXPECT_TRUE(all_close(r_inp, n_inp, kRefGradRel, kRefGradAbs));
  EXPECT_TRUE(all_close(r_weight, n_weight, kRefGradRel, kRefGradAbs));
  EXPECT_TRUE(all_close(r_bias, n_bias, kRefGradRel, kRefGradAbs));
  std::vector<float> f_inp(inp.size()), f_weight(weight.size()), f_bias(bias.size());
  linear_backward(f_inp.data(), f_weight.data(), f_bias.data(), d.dout.data(), d.inp.data(),
                  d.weight.data(), s);
  EXPECT_TRUE(all_close(f_inp, n_inp, kGradRel, kGradAbs));
  EXPECT_TRUE(all_close(f_weight, n_weight, kGradRel, kGradAbs));
  EXPECT_TRUE(all_close(f_bias, n_bias, kGradRel, kGradAbs));
}

// Includes a shape with a single GEMM tile but a long reduction (rows), the case where a library
// might split the reduction across threads: the router-like [4096 x 16] · [16 x 8] weight gradient.
TEST(Linear, BitwiseIdenticalAtOneAndTwoThreads) {
  for (const LinearShape& s : {LinearShape{300, 96, 130}, LinearShape{4096, 16, 8}}) {
    SCOPED_TRACE(describe(s));
    Data d(s, 4);
    struct Result {
      std::vector<float> out, dinp, dweight, dbias;
    };
    auto run = [&] {
      Result r{std::vector<float>(d.dout.size()), std::vector<float>(d.inp.size()),
               std::vector<float>(d.weight.size()), std::vector<float>(d.bias.size())};
      linear_forward(r.out.data(), d.inp.data(), d.weight.data(), d.bias.data(), s);
      linear_backward(r.dinp.data(), r.dweight.data(), r.dbias.data(), d.dout.data(), d.inp.data(),
                      d.weight.data(), s);
      return r;
    };
    Result one, two;
    with_threads(1, [&] { one = run(); });
    with_threads(2, [&] { two = run(); });
    EXPECT_TRUE(bitwise_equal(one.out, two.out));
    EXPECT_TRUE(bitwise_equal(one.dinp, two.dinp));
    EXPECT_TRUE(bitwise_equal(one.dweight, two.dweight));
    EXPECT_TRUE(bitwise_equal(one.dbias, two.dbias));
  }
}

// logits = h · Eᵀ is a linear layer without bias whose weight is Eᵀ.
TEST(TiedOutput, MatchesLinearReferenceOnTransposedTable) {
  for (const LinearShape& s :
       {LinearShape{1, 1, 1}, LinearShape{5, 7, 11}, LinearShape{130, 24, 515}}) {
    SCOPED_TRACE(describe(s));
    auto h = random_floats(size_t(s.rows) * s.in_dim, 5);
    auto table = random_floats(size_t(s.out_dim) * s.in_dim, 6);
    auto dlogits = random_floats(size_t(s.rows) * s.out_dim, 7);
    std::vector<float> logits(dlogits.size());
    tied_output_forward(logits.data(), h.data(), table.data(), s);
    auto dh = random_floats(h.size(), 8), dtable = random_floats(table.size(), 9);
    auto r_dh = to_double(dh), r_dtable_t = transpose(to_double(dtable), s.out_dim, s.in_dim);
    tied_output_backward(dh.data(), dtable.data(), dlogits.data(), h.data(), table.data(), s);

    auto hd = to_double(h), weight = transpose(to_double(table), s.out_dim, s.in_dim);
    std::vector<double> ref(logits.size());
    linear_forward_reference(ref.data(), hd.data(), weight.data(), nullptr, s);
    EXPECT_TRUE(all_close(logits, ref, kFloatRel, kFloatAbs));
    auto dl = to_double(dlogits);
    linear_backward_reference(r_dh.data(), r_dtable_t.data(), nullptr, dl.data(), hd.data(),
                              weight.data(), s);
    EXPECT_TRUE(all_close(dh, r_dh, kFloatRel, kFloatAbs));
    EXPECT_TRUE(
        all_close(dtable, transpose(r_dtable_t, s.in_dim, s.out_dim), kFloatRel, kFloatAbs));
  }
}

TEST(TiedOutput, GradientsMatchFiniteDifferences) {
  const LinearShape s{3, 4, 6};
  auto h = random_floats(size_t(s.rows) * s.in_dim, 10);
  auto table = random_floats(size_t(s.out_dim) * s.in_dim, 11);
  auto w = random_floats(size_t(s.rows) * s.out_dim, 12);
  auto hd = to_double(h), td = to_double(table), wd = to_double(w);
  std::vector<double> out(w.size());
  auto loss = [&] {
    auto weight = transpose(td, s.out_dim, s.in_dim);
    linear_forward_reference(out.data(), hd.data(), weight.data(), nullptr, s);
    return weighted_sum(out, wd);
  };
  const auto n_h = numeric_gradient(hd, loss), n_table = numeric_gradient(td, loss);
  std::vector<float> dh(h.size()), dtable(table.size());
  tied_output_backward(dh.data(), dtable.data(), w.data(), h.data(), table.data(), s);
  EXPECT_TRUE(all_close(dh, n_h, kGradRel, kGradAbs));
  EXPECT_TRUE(all_close(dtable, n_table, kGradRel, kGradAbs));
}

TEST(Residual, AddsAndAccumulatesGradients) {
  const int n = 37;
  auto a = random_floats(n, 13), b = random_floats(n, 14), dout = random_floats(n, 15);
  std::vector<float> out(n);
  residual_forward(out.data(), a.data(), b.data(), n);
  for (int i = 0; i < n; ++i) EXPECT_EQ(out[i], a[i] + b[i]);
  auto da = random_floats(n, 16), db = random_floats(n, 17);
  const auto da0 = da, db0 = db;
  residual_backward(da.data(), db.data(), dout.data(), n);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(da[i], da0[i] + dout[i]);
    EXPECT_EQ(db[i], db0[i] + dout[i]);
  }
  residual_forward(a.data(), a.data(), b.data(), n);  // in place
  EXPECT_TRUE(bitwise_equal(a, out));
}
