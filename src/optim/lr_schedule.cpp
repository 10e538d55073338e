// Learning-rate schedules, evaluated in double and rounded once.
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace ecmoe {

void LrSchedule::validate() const {
  ECMOE_CHECK(std::isfinite(peak_lr) && peak_lr > 0.f, "peak learning rate must be > 0, got ",
              peak_lr);
  ECMOE_CHECK(warmup_steps >= 0, "warm-up steps must be >= 0, got ", warmup_steps);
  switch (decay) {
    case LrDecay::InverseSqrt:
      ECMOE_CHECK(decay_start == 0 || decay_start >= warmup_steps, "decay_start (", decay_start,
                  ") must not fall inside the warm-up (", warmup_steps, " steps)");
      break;
    case LrDecay::Cosine:
      ECMOE_CHECK(total_steps > warmup_steps, "cosine schedule: total_steps (", total_steps,
                  ") must exceed warmup_steps (", warmup_steps, ")");
      ECMOE_CHECK(min_lr >= 0.f && min_lr <= peak_lr, "cosine schedule: min_lr (", min_lr,
                  ") must be in [0, peak_lr]");
      break;
    case LrDecay::Linear:
      ECMOE_CHECK(total_steps >= warmup_steps, "linear schedule: total_steps (", total_steps,
                  ") must not be below warmup_steps (", warmup_steps, ")");
      break;
    case LrDecay::Constant:
      break;
  }
}

float LrSchedule::lr_at(int64_t step) const {
  ECMOE_CHECK(step >= 0, "learning-rate schedule asked for step ", step);
  const double peak = peak_lr;
  if (step < warmup_steps) return float(peak * double(step + 1) / double(warmup_steps));
  switch (decay) {
    case LrDecay::InverseSqrt: {
      const int64_t start = std::max({decay_start, warmup_steps, int64_t(1)});
      if (step < start) return peak_lr;
      return float(peak * std::sqrt(double(start) / double(step)));
    }
    case LrDecay::Cosine: {
      const double progress =
          std::min(1.0, double(step - warmup_steps) / double(total_steps - warmup_steps));
      return float(min_lr + 0.5 * (peak - min_lr) * (1.0 + std::cos(std::numbers::pi * progress)));
    }
    case LrDecay::Linear: {
      const int64_t left = std::max<int64_t>(1, total_steps - step);
      return float(peak * double(left) / double(total_steps - warmup_steps + 1));
    }
    case LrDecay::Constant:
      return peak_lr;
  }
  return peak_lr;
}

}  // namespace ecmoe
