#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "nn/cross_entropy.h"
#include "nn_test_util.h"
#include "support/nn/cross_entropy_reference.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

// About a third of the rows ignored; never all of them unless asked.
std::vector<int> random_targets(int rows, int vocab, uint64_t seed, bool ignore_some = true) {
  ecmoe::Rng rng(seed, 5);
  std::vector<int> t(rows);
  for (int r = 0; r < rows; ++r)
    t[r] = ignore_some && r % 3 == 1 ? kIgnoreIndex : int(rng.below(r, vocab));
  return t;
}

struct Case {
  int rows, vocab;
};
// One row, one class (loss 0), vocab not a multiple of 16, one past it, and a wide row.
const Case kCases[] = {{1, 1}, {1, 2}, {4, 7}, {6, 17}, {5, 1000}};

}  // namespace

TEST(CrossEntropy, MatchesReferenceForwardAndBackward) {
  for (const Case& c : kCases)
    for (float scale : {1.f, 30.f}) {  // 30: logits spread over hundreds, softmax near one-hot
      SCOPED_TRACE(::testing::Message()
                   << "rows " << c.rows << " vocab " << c.vocab << " scale " << scale);
      const auto logits = random_floats(size_t(c.rows) * c.vocab, 1, scale);
      const auto targets = random_targets(c.rows, c.vocab, 2, c.rows > 1);
      std::vector<float> lse(c.rows), dlogits(logits.size(), 5.f);  // written, not accumulated
      const auto result =
          cross_entropy_forward(lse.data(), logits.data(), targets.data(), c.rows, c.vocab);
      cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(),
                             result.count, 2.f, c.rows, c.vocab);
      const auto logits_d = to_double(logits);
      const auto ref =
          cross_entropy_forward_reference(logits_d.data(), targets.data(), c.rows, c.vocab);
      std::vector<double> ref_dlogits(logits.size());
      cross_entropy_backward_reference(ref_dlogits.data(), logits_d.data(), targets.data(), 2.0,
                                       c.rows, c.vocab);
      EXPECT_EQ(result.count, ref.count);
      EXPECT_NEAR(result.loss, ref.loss, 1e-5 * (1 + std::abs(ref.loss)));
      EXPECT_TRUE(all_close(dlogits, ref_dlogits, kFloatRel, kFloatAbs));
    }
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  const int rows = 5, vocab = 6;
  const auto logits = random_floats(size_t(rows) * vocab, 3, 2.f);
  const auto targets = random_targets(rows, vocab, 4);
  auto logits_d = to_double(logits);
  auto loss = [&] {
    return cross_entropy_forward_reference(logits_d.data(), targets.data(), rows, vocab).loss;
  };
  const auto numeric = numeric_gradient(logits_d, loss);
  std::vector<double> ref(logits.size());
  cross_entropy_backward_reference(ref.data(), logits_d.data(), targets.data(), 1.0, rows, vocab);
  EXPECT_TRUE(all_close(ref, numeric, kRefGradRel, kRefGradAbs));
  std::vector<float> lse(rows), dlogits(logits.size());
  const auto result = cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), result.count,
                         1.f, rows, vocab);
  EXPECT_TRUE(all_close(dlogits, numeric, kGradRel, kGradAbs));
  for (int r = 0; r < rows; ++r) {  // ignored rows get exactly zero
    if (targets[r] != kIgnoreIndex) continue;
    for (int j = 0; j < vocab; ++j) EXPECT_EQ(dlogits[size_t(r) * vocab + j], 0.f);
  }
}

TEST(CrossEntropy, AllIgnoredGivesZeroLossAndGradient) {
  const int rows = 3, vocab = 4;
  const auto logits = random_floats(size_t(rows) * vocab, 5);
  const std::vector<int> targets(rows, kIgnoreIndex);
  std::vector<float> lse(rows), dlogits(logits.size(), 1.f);
  const auto result = cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
  EXPECT_EQ(result.count, 0);
  EXPECT_EQ(result.loss, 0.0);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), result.count,
                         1.f, rows, vocab);
  for (float g : dlogits) EXPECT_EQ(g, 0.f);
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  const int vocab = 5;
  const std::vector<float> logits = {1000.f, 0.f, -1000.f, 999.f, 1000.f};
  const std::vector<int> targets = {3};
  std::vector<float> lse(1), dlogits(vocab);
  const auto result = cross_entropy_forward(lse.data(), logits.data(), targets.data(), 1, vocab);
  // log(e^0 + e^-1 + e^0) + 1 relative to the max 1000, minus the target's 999
  EXPECT_NEAR(result.loss, std::log(2 + std::exp(-1.0)) + 1, 1e-4);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), 1, 1.f, 1,
                         vocab);
  for (float g : dlogits) EXPECT_TRUE(std::isfinite(g));
}

TEST(CrossEntropy, InPlaceBackwardEqualsOutOfPlace) {
  const int rows = 7, vocab = 33;
  auto logits = random_floats(size_t(rows) * vocab, 6);
  const auto targets = random_targets(rows, vocab, 7);
  std::vector<float> lse(rows), dlogits(logits.size());
  const auto result = cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), result.count,
                         1.f, rows, vocab);
  cross_entropy_backward(logits.data(), logits.data(), lse.data(), targets.data(), result.count,
                         1.f, rows, vocab);
  EXPECT_TRUE(bitwise_equal(dlogits, logits));
}

TEST(CrossEntropy, BitwiseIdenticalAtOneAndTwoThreads) {
  const int rows = 301, vocab = 517;
  const auto logits = random_floats(size_t(rows) * vocab, 8, 3.f);
  const auto targets = random_targets(rows, vocab, 9);
  auto run = [&](double& loss) {
    std::vector<float> lse(rows), dlogits(logits.size());
    const auto result =
        cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
    cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), result.count,
                           1.f, rows, vocab);
    loss = result.loss;
    dlogits.insert(dlogits.end(), lse.begin(), lse.end());
    return dlogits;
  };
  double loss1 = 0, loss2 = 0;
  std::vector<float> one, two;
  with_threads(1, [&] { one = run(loss1); });
  with_threads(2, [&] { two = run(loss2); });
  EXPECT_TRUE(bitwise_equal(one, two));
  EXPECT_EQ(0, std::memcmp(&loss1, &loss2, sizeof(double)));
}

TEST(CrossEntropy, RejectsTargetsOutsideTheVocabulary) {
  const auto logits = random_floats(6, 10);
  std::vector<float> lse(2);
  for (std::vector<int> bad : {std::vector<int>{0, 3}, std::vector<int>{-2, 0}})
    EXPECT_THROW(cross_entropy_forward(lse.data(), logits.data(), bad.data(), 2, 3), ecmoe::Error);
}
