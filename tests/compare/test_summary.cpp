// Aggregation behind the comparison report: means and spreads over seeds, the seed-averaged
// curve, and the interpolated "steps to reach a perplexity" measure.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "compare/summary.h"
#include "core/error.h"

namespace ecmoe::compare {
namespace {

RunRecord record(const std::string& variant, uint64_t seed, std::vector<double> perplexities) {
  RunRecord r;
  r.run.name = variant + std::to_string(seed);
  r.run.variant = variant;
  r.run.family = "encoder";
  r.run.seed = seed;
  r.router = "expert_choice";
  r.tokens_per_step = 100;
  r.median_step_seconds = 0.5;
  for (std::size_t i = 0; i < perplexities.size(); ++i)
    r.curve.push_back(
        {int64_t(10 * (i + 1)), 2.0 * double(i + 1), std::log(perplexities[i]), perplexities[i]});
  r.final_perplexity = perplexities.back();
  r.final_loss = std::log(perplexities.back());
  r.experts_per_token = {1, 2, 3, 4, 0, 0};
  return r;
}

TEST(CompareSummary, MeanStdAndGeometricMeanCurvePerVariant) {
  const std::vector<RunRecord> runs = {record("a", 1, {100, 40}), record("b", 1, {90, 30}),
                                       record("a", 2, {400, 60}), record("a", 3, {100, 50})};
  const std::vector<VariantSummary> s = summarize(runs);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].variant, "a");  // order of first appearance
  EXPECT_EQ(s[0].seeds, 3);
  EXPECT_DOUBLE_EQ(s[0].perplexity_mean, 50.0);
  EXPECT_DOUBLE_EQ(s[0].perplexity_std, 10.0);  // sample std of 40, 60, 50
  EXPECT_NEAR(s[0].curve[0].perplexity, std::cbrt(100.0 * 400.0 * 100.0), 1e-9);
  EXPECT_EQ(s[0].experts_per_token[3], 12);
  EXPECT_DOUBLE_EQ(s[0].share_of_tokens(3), 0.4);
  EXPECT_DOUBLE_EQ(s[0].tokens_per_second, 200.0);
  EXPECT_EQ(s[1].seeds, 1);
  EXPECT_DOUBLE_EQ(s[1].perplexity_std, 0.0);
  EXPECT_EQ(find_variant(s, "b"), &s[1]);
  EXPECT_EQ(find_variant(s, "c"), nullptr);
}

TEST(CompareSummary, SeedsValidatedAtDifferentStepsAreRefused) {
  RunRecord other = record("a", 2, {100, 40});
  other.curve[1].step = 25;
  EXPECT_THROW(summarize({record("a", 1, {100, 40}), other}), Error);
}

TEST(CompareSummary, StepsToReachInterpolatesInLogPerplexity) {
  const RunRecord r = record("a", 1, {1000, 100, 10});  // steps 10, 20, 30; seconds 2, 4, 6
  EXPECT_DOUBLE_EQ(*steps_to_reach(r.curve, 1000), 10.0);
  EXPECT_DOUBLE_EQ(*steps_to_reach(r.curve, 2000), 10.0);  // reached at the first point
  EXPECT_NEAR(*steps_to_reach(r.curve, std::sqrt(1000.0 * 100.0)), 15.0, 1e-9);
  EXPECT_NEAR(*steps_to_reach(r.curve, 10), 30.0, 1e-9);
  EXPECT_NEAR(*seconds_to_reach(r.curve, std::sqrt(10.0 * 100.0)), 5.0, 1e-9);
  EXPECT_FALSE(steps_to_reach(r.curve, 9.99).has_value());
}

TEST(CompareSummary, PerplexityAtInterpolatesBetweenValidations) {
  const RunRecord r = record("a", 1, {1000, 100, 10});  // steps 10, 20, 30
  EXPECT_FALSE(perplexity_at(r.curve, 5).has_value());  // before the first validation
  EXPECT_DOUBLE_EQ(*perplexity_at(r.curve, 10), 1000.0);
  EXPECT_NEAR(*perplexity_at(r.curve, 25), std::sqrt(100.0 * 10.0), 1e-9);
  EXPECT_DOUBLE_EQ(*perplexity_at(r.curve, 30), 10.0);
  EXPECT_FALSE(perplexity_at(r.curve, 31).has_value());
}

TEST(CompareSummary, SpeedupOverTrainingMeasuresEachFractionAgainstTheBaselineThen) {
  // The baseline falls 10x every 40 steps; the variant is twice as fast early and catches
  // nothing late: at 50% the baseline has 100 (step 80), the variant reached it at step 40.
  const std::vector<VariantSummary> s =
      summarize({record("base", 1, {1e4, 1e3, 1e2, 1e1}),  // steps 10..40: 10x every 10 steps
                 record("fast", 1, {1e3, 1e2, 30, 20})});
  const VariantSummary& base = s[0];
  const VariantSummary& fast = s[1];
  const std::vector<SpeedupPoint> p = speedup_over_training(fast, base, {0.25, 0.5, 1.0});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_DOUBLE_EQ(p[0].baseline_step, 10.0);
  EXPECT_NEAR(p[0].baseline_perplexity, 1e4, 1e-8);
  EXPECT_DOUBLE_EQ(*p[0].steps, 10.0);  // reached at the variant's first validation
  EXPECT_DOUBLE_EQ(*p[0].speedup(), 1.0);
  EXPECT_DOUBLE_EQ(p[1].baseline_step, 20.0);
  EXPECT_NEAR(p[1].baseline_perplexity, 1e3, 1e-9);
  EXPECT_DOUBLE_EQ(*p[1].steps, 10.0);
  EXPECT_DOUBLE_EQ(*p[1].speedup(), 2.0);
  // At the end the baseline's final mean perplexity (10) is never reached by the variant.
  EXPECT_DOUBLE_EQ(p[2].baseline_perplexity, 10.0);
  EXPECT_FALSE(p[2].steps.has_value());
  EXPECT_FALSE(p[2].speedup().has_value());
  // Against itself, every point is 1x.
  for (const SpeedupPoint& q : speedup_over_training(base, base, {0.25, 0.5, 0.75, 1.0}))
    EXPECT_NEAR(*q.speedup(), 1.0, 1e-9) << q.fraction;
}

TEST(CompareSummary, CurvesCarryTrainingLossAndHistogramsOverSeeds) {
  RunRecord a = record("a", 1, {100, 40});
  RunRecord b = record("a", 2, {100, 40});
  a.curve[0].train_loss = 5.0;
  b.curve[0].train_loss = 7.0;
  a.curve[1].experts_per_token = {1, 0, 3, 0, 0, 0};
  b.curve[1].experts_per_token = {0, 0, 4, 0, 0, 0};
  a.steps = b.steps = 20;
  a.data_train_tokens = b.data_train_tokens = 500;
  const std::vector<VariantSummary> s = summarize({a, b});
  EXPECT_DOUBLE_EQ(s[0].curve[0].train_loss, 6.0);
  EXPECT_EQ(s[0].curve[1].experts_per_token[2], 7);
  EXPECT_DOUBLE_EQ(share_of_tokens(s[0].curve[1].experts_per_token, 0), 1.0 / 8.0);
  EXPECT_DOUBLE_EQ(s[0].epochs, 20.0 * 100.0 / 500.0);  // steps · tokens per step / split
  a.data_train_tokens = b.data_train_tokens = 0;
  EXPECT_DOUBLE_EQ(summarize({a, b})[0].epochs, 0.0);  // not recorded
}

}  // namespace
}  // namespace ecmoe::compare
