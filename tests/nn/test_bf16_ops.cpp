// Each nn op with Precision::kBf16 against its fp32 op. On the fallback path
// (set_bf16_fallback, as ECMOE_BF16_FALLBACK=1: the fp32 GEMM on bf16-rounded operands, same tiles)
// a bf16 linear or tied-output op must equal, bit for bit, the fp32 op applied to bf16-rounded
// operands: that checks that each of its GEMMs rounds exactly its two operands and nothing else
// (the native kernel's agreement with the fallback is test_gemm_bf16's). Attention also rounds its
// probabilities before P·V, so it is checked against fp32 by a bound instead.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "nn/attention.h"
#include "nn/linear.h"
#include "nn/tied_output.h"
#include "nn_test_util.h"

using namespace ecmoe;
using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_to_bf16(v[i]);
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Bf16Ops : public ::testing::Test {
 protected:
  void SetUp() override { set_bf16_fallback(true); }
  void TearDown() override { set_bf16_fallback(false); }
};

}  // namespace

TEST_F(Bf16Ops, LinearIsFp32LinearOfRoundedOperands) {
  const LinearShape s{300, 96, 130};
  const auto x = random_floats(size_t(s.rows) * s.in_dim, 1);
  const auto w = random_floats(size_t(s.in_dim) * s.out_dim, 2);
  const auto b = random_floats(size_t(s.out_dim), 3);
  const auto dout = random_floats(size_t(s.rows) * s.out_dim, 4);
  std::vector<float> y(size_t(s.rows) * s.out_dim), y_ref(y.size()), y_fp32(y.size());
  linear_forward(y.data(), x.data(), w.data(), b.data(), s, Precision::kBf16);
  linear_forward(y_ref.data(), rounded(x).data(), rounded(w).data(), b.data(), s);
  linear_forward(y_fp32.data(), x.data(), w.data(), b.data(), s);
  EXPECT_TRUE(same_bits(y, y_ref));
  EXPECT_FALSE(same_bits(y, y_fp32));

  // Backward: dinp = dout·Wᵀ rounds dout and W; dW = xᵀ·dout rounds x and dout; the bias
  // gradient is an fp32 sum of dout.
  std::vector<float> dx(x.size(), 0.f), dw(w.size(), 0.f), db(b.size(), 0.f);
  std::vector<float> dx_ref(x.size(), 0.f), dw_ref(w.size(), 0.f), db_ref(b.size(), 0.f);
  linear_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), s,
                  Precision::kBf16);
  const auto rdout = rounded(dout);
  linear_backward(dx_ref.data(), dw_ref.data(), nullptr, rdout.data(), rounded(x).data(),
                  rounded(w).data(), s);
  linear_backward(nullptr, nullptr, db_ref.data(), dout.data(), x.data(), w.data(), s);
  EXPECT_TRUE(same_bits(dx, dx_ref));
  EXPECT_TRUE(same_bits(dw, dw_ref));
  EXPECT_TRUE(same_bits(db, db_ref));
}

TEST_F(Bf16Ops, TiedOutputIsFp32OfRoundedOperands) {
  const LinearShape s{70, 48, 600};  // rows, dim, vocab
  const auto h = random_floats(size_t(s.rows) * s.in_dim, 5);
  const auto table = random_floats(size_t(s.out_dim) * s.in_dim, 6);
  const auto dlogits = random_floats(size_t(s.rows) * s.out_dim, 7);
  std::vector<float> logits(size_t(s.rows) * s.out_dim), ref(logits.size());
  tied_output_forward(logits.data(), h.data(), table.data(), s, Precision::kBf16);
  tied_output_forward(ref.data(), rounded(h).data(), rounded(table).data(), s);
  EXPECT_TRUE(same_bits(logits, ref));
  std::vector<float> dh(h.size(), 0.f), dt(table.size(), 0.f);
  std::vector<float> dh_ref(h.size(), 0.f), dt_ref(table.size(), 0.f);
  tied_output_backward(dh.data(), dt.data(), dlogits.data(), h.data(), table.data(), s,
                       Precision::kBf16);
  tied_output_backward(dh_ref.data(), dt_ref.data(), rounded(dlogits).data(), rounded(h).data(),
                       rounded(table).data(), s);
  EXPECT_TRUE(same_bits(dh, dh_ref));
  EXPECT_TRUE(same_bits(dt, dt_ref));
}

// Attention in bf16 against fp32. Scores: 2u·Σ|q||k| per entry (u = 2^-8), i.e. a relative
// perturbation of the softmax inputs of order u·sqrt(head_dim)·|q||k|/|q·k|; the probabilities
// then enter P·V rounded (another u), and V is rounded (u). Normwise, for random data, that is a
// few u: we allow 8u = 1/32 on the output and on dqkv (whose GEMMs round dO, V, P, dS, K, Q once
// each). A wrong operand or a missing scale is off by O(1).
TEST_F(Bf16Ops, AttentionWithinBf16Bound) {
  for (bool native : {false, true}) {
    if (native) set_bf16_fallback(false);
    for (bool causal : {false, true}) {
      AttentionConfig c{2, 40, 2, 24, causal};
      const size_t rows = size_t(c.batch) * c.seq_len, d = size_t(c.model_dim());
      const auto qkv = random_floats(rows * 3 * d, 8, 0.5f);
      const auto dout = random_floats(rows * d, 9);
      const size_t probs_size = size_t(c.batch) * c.n_heads * c.seq_len * c.seq_len;
      std::vector<float> out32(rows * d), out16(rows * d), p32(probs_size), p16(probs_size);
      std::vector<float> dqkv32(qkv.size(), 0.f), dqkv16(qkv.size(), 0.f);
      attention_forward(out32.data(), p32.data(), qkv.data(), c);
      attention_backward(dqkv32.data(), dout.data(), qkv.data(), p32.data(), c);
      c.precision = Precision::kBf16;
      attention_forward(out16.data(), p16.data(), qkv.data(), c);
      attention_backward(dqkv16.data(), dout.data(), qkv.data(), p16.data(), c);
      const auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
        double num = 0, den = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
          den += double(b[i]) * b[i];
        }
        return std::sqrt(num / den);
      };
      constexpr double kU = 1.0 / 256;
      EXPECT_LE(rel(out16, out32), 8 * kU) << "native=" << native << " causal=" << causal;
      EXPECT_LE(rel(dqkv16, dqkv32), 8 * kU) << "native=" << native << " causal=" << causal;
      EXPECT_FALSE(same_bits(out16, out32));
      EXPECT_FALSE(same_bits(dqkv16, dqkv32));
    }
  }
}
