// The classification head's gradients against central differences in double, for both poolings,
// with padded sequences (mean pooling must ignore positions past valid_len).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "finetune/classifier_head.h"

namespace ecmoe::finetune {
namespace {

constexpr int B = 3, T = 5, d = 7, C = 4;

struct HeadCase {
  std::vector<float> hidden, weight, bias;
  std::vector<int32_t> valid_len = {5, 2, 3};
  std::vector<int32_t> labels = {2, 0, 3};
  HeadCase() {
    const Rng rng(11, 0);
    uint64_t k = 0;
    for (int i = 0; i < B * T * d; ++i) hidden.push_back(rng.normal(k++));
    for (int i = 0; i < d * C; ++i) weight.push_back(0.5f * rng.normal(k++));
    for (int i = 0; i < C; ++i) bias.push_back(0.1f * rng.normal(k++));
  }
  double loss(Pooling pooling) const {
    HeadState s;
    return head_forward(s, hidden.data(), valid_len.data(), labels.data(), weight.data(),
                        bias.data(), pooling, {B, T, d, C});
  }
};

// Central difference of the loss in one float of `values`; the loss is computed in float, so the
// step is large enough (1e-2) that rounding (~1e-7 relative) stays far below the tolerance.
double numeric(HeadCase& s, std::vector<float>& values, size_t i, Pooling pooling) {
  const float keep = values[i];
  const float h = 1e-2f;
  values[i] = keep + h;
  const double up = s.loss(pooling);
  values[i] = keep - h;
  const double down = s.loss(pooling);
  values[i] = keep;
  return (up - down) / (2.0 * double(h));
}

class HeadGradients : public ::testing::TestWithParam<Pooling> {};

TEST_P(HeadGradients, MatchCentralDifferences) {
  const Pooling pooling = GetParam();
  HeadCase s;
  HeadState state;
  head_forward(state, s.hidden.data(), s.valid_len.data(), s.labels.data(), s.weight.data(),
               s.bias.data(), pooling, {B, T, d, C});
  std::vector<float> dh(s.hidden.size(), 0.25f), dw(s.weight.size(), 0.f), db(C, 0.f);
  head_backward(dh.data(), dw.data(), db.data(), state, s.weight.data(), {B, T, d, C});
  for (auto& g : dh) g -= 0.25f;  // backward accumulates: it must add onto what is there
  const auto check = [&](std::vector<float>& values, const std::vector<float>& grads,
                         const char* what) {
    for (size_t i = 0; i < values.size(); ++i) {
      const double want = numeric(s, values, i, pooling);
      EXPECT_NEAR(grads[i], want, 2e-3 + 2e-2 * std::abs(want)) << what << "[" << i << "]";
    }
  };
  check(s.weight, dw, "weight");
  check(s.bias, db, "bias");
  check(s.hidden, dh, "hidden");
  // Positions the pooling does not read get no gradient: past valid_len, and all but the first
  // with first-token pooling.
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const bool read = pooling == Pooling::kMean ? t < s.valid_len[b] : t == 0;
      if (read) continue;
      for (int i = 0; i < d; ++i) EXPECT_EQ(dh[(b * T + t) * d + i], 0.f) << b << "," << t;
    }
}

INSTANTIATE_TEST_SUITE_P(Pooling, HeadGradients, ::testing::Values(Pooling::kFirst, Pooling::kMean),
                         [](const auto& info) { return pooling_name(info.param); });

TEST(Head, PredictionsAreTheArgmaxAndInferenceNeedsNoLabels) {
  HeadCase s;
  HeadState state;
  const double loss = head_forward(state, s.hidden.data(), nullptr, nullptr, s.weight.data(),
                                   s.bias.data(), Pooling::kFirst, {B, T, d, C});
  EXPECT_EQ(loss, 0.0);
  for (int b = 0; b < B; ++b) {
    const int p = head_prediction(state, b, C);
    for (int c = 0; c < C; ++c) EXPECT_GE(state.logits[b * C + p], state.logits[b * C + c]);
  }
  std::vector<float> dh(s.hidden.size()), dw(s.weight.size()), db(C);
  EXPECT_THROW(head_backward(dh.data(), dw.data(), db.data(), state, s.weight.data(), {B, T, d, C}),
               Error);
  EXPECT_THROW(parse_pooling("max"), Error);
}

}  // namespace
}  // namespace ecmoe::finetune
