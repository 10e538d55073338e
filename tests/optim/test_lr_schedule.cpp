// Learning-rate schedules at the steps where their pieces meet.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "optim/lr_schedule.h"

using namespace ecmoe;

TEST(LrSchedule, WarmupConstantInverseSqrt) {
  LrSchedule s{.peak_lr = 1e-2f, .warmup_steps = 100, .decay_start = 1000};
  s.validate();
  EXPECT_FLOAT_EQ(s.lr_at(0), 1e-4f);  // never 0: the first update counts
  EXPECT_FLOAT_EQ(s.lr_at(49), 5e-3f);
  EXPECT_FLOAT_EQ(s.lr_at(99), 1e-2f);
  EXPECT_FLOAT_EQ(s.lr_at(100), 1e-2f);
  EXPECT_FLOAT_EQ(s.lr_at(999), 1e-2f);
  EXPECT_FLOAT_EQ(s.lr_at(1000), 1e-2f);  // continuous where the decay starts
  EXPECT_FLOAT_EQ(s.lr_at(4000), 5e-3f);  // sqrt(1000 / 4000) = 1/2
  EXPECT_FLOAT_EQ(s.lr_at(100000), 1e-3f);
}

// The paper (after T5): no warm-up, constant for 10k steps, then 1/sqrt decay.
TEST(LrSchedule, PaperSchedule) {
  LrSchedule s{.peak_lr = 0.01f, .warmup_steps = 0, .decay_start = 10000};
  s.validate();
  EXPECT_FLOAT_EQ(s.lr_at(0), 0.01f);
  EXPECT_FLOAT_EQ(s.lr_at(9999), 0.01f);
  // T5's rsqrt: 1/sqrt(max(step, 10k)), i.e. 0.01 at 10k.
  for (int64_t step : {10000, 12345, 40000, 1000000})
    EXPECT_FLOAT_EQ(s.lr_at(step), float(1.0 / std::sqrt(double(step))));
}

TEST(LrSchedule, InverseSqrtRightAfterWarmup) {
  LrSchedule s{.peak_lr = 1.f, .warmup_steps = 16};
  EXPECT_FLOAT_EQ(s.lr_at(15), 1.f);
  EXPECT_FLOAT_EQ(s.lr_at(16), 1.f);
  EXPECT_FLOAT_EQ(s.lr_at(64), 0.5f);
  LrSchedule no_warmup{.peak_lr = 1.f};
  EXPECT_FLOAT_EQ(no_warmup.lr_at(0), 1.f);
  EXPECT_FLOAT_EQ(no_warmup.lr_at(1), 1.f);
  EXPECT_FLOAT_EQ(no_warmup.lr_at(4), 0.5f);
}

TEST(LrSchedule, Cosine) {
  LrSchedule s{.peak_lr = 1.f,
               .warmup_steps = 10,
               .decay = LrDecay::Cosine,
               .total_steps = 110,
               .min_lr = 0.1f};
  s.validate();
  EXPECT_FLOAT_EQ(s.lr_at(4), 0.5f);
  EXPECT_FLOAT_EQ(s.lr_at(10), 1.f);
  EXPECT_FLOAT_EQ(s.lr_at(60), 0.55f);  // halfway: (peak + min) / 2
  EXPECT_FLOAT_EQ(s.lr_at(110), 0.1f);
  EXPECT_FLOAT_EQ(s.lr_at(5000), 0.1f);
}

TEST(LrSchedule, Constant) {
  LrSchedule s{.peak_lr = 3e-4f, .warmup_steps = 3, .decay = LrDecay::Constant};
  EXPECT_FLOAT_EQ(s.lr_at(0), 1e-4f);
  EXPECT_FLOAT_EQ(s.lr_at(2), 3e-4f);
  EXPECT_FLOAT_EQ(s.lr_at(1000000), 3e-4f);
}

// Fine-tuning's schedule: linear warm-up, then linear decay that ends at peak / (rest + 1), never
// 0.
TEST(LrSchedule, Linear) {
  const LrSchedule s{
      .peak_lr = 1.f, .warmup_steps = 2, .decay = LrDecay::Linear, .total_steps = 10};
  s.validate();
  EXPECT_FLOAT_EQ(s.lr_at(0), 0.5f);
  EXPECT_FLOAT_EQ(s.lr_at(1), 1.f);
  EXPECT_FLOAT_EQ(s.lr_at(2), 8.f / 9.f);  // 8 steps left of a decay over 8 + 1
  EXPECT_FLOAT_EQ(s.lr_at(5), 5.f / 9.f);
  EXPECT_FLOAT_EQ(s.lr_at(9), 1.f / 9.f);  // the last step
  EXPECT_FLOAT_EQ(s.lr_at(50), 1.f / 9.f);
  for (int64_t step = 2; step < 9; ++step) EXPECT_GT(s.lr_at(step), s.lr_at(step + 1));
  // All warm-up: total == warmup is allowed (a one-step run warms up to peak).
  EXPECT_FLOAT_EQ(
      (LrSchedule{.peak_lr = 1.f, .warmup_steps = 1, .decay = LrDecay::Linear, .total_steps = 1}
           .lr_at(0)),
      1.f);
}

TEST(LrSchedule, RejectsInconsistentSchedules) {
  EXPECT_THROW((LrSchedule{.peak_lr = 0.f}.validate()), Error);
  EXPECT_THROW((LrSchedule{.peak_lr = 1.f, .warmup_steps = -1}.validate()), Error);
  EXPECT_THROW((LrSchedule{.peak_lr = 1.f, .warmup_steps = 100, .decay_start = 50}.validate()),
               Error);
  EXPECT_THROW(
      (LrSchedule{.peak_lr = 1.f, .warmup_steps = 100, .decay = LrDecay::Cosine, .total_steps = 100}
           .validate()),
      Error);
  EXPECT_THROW(
      (LrSchedule{.peak_lr = 1.f, .warmup_steps = 10, .decay = LrDecay::Linear, .total_steps = 9}
           .validate()),
      Error);
  EXPECT_THROW(LrSchedule{}.lr_at(-1), Error);
}
