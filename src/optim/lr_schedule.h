// The learning rate as a pure function of the step, so a resumed run needs no schedule state.
// Default shape is the paper's (after T5): linear warm-up, constant, then inverse square root.
#pragma once
#include <cstdint>

namespace ecmoe {

enum class LrDecay {
  InverseSqrt,  // peak · sqrt(D / step) from step D = max(decay_start, warmup_steps, 1)
  Cosine,       // from peak at the end of warm-up down to min_lr at total_steps, then min_lr
  Constant,     // peak after warm-up
  // From peak at the end of warm-up linearly down to peak / (total_steps − warmup_steps + 1) at
  // the last step, total_steps − 1 (never a wasted 0), and that value after it (fine-tuning's).
  Linear,
};

struct LrSchedule {
  float peak_lr = 1e-3f;
  // Steps are 0-based update indices (AdamW's bias-correction t is step + 1). Warm-up is linear
  // from peak/warmup_steps at step 0 to peak at step warmup_steps − 1: the first update is never
  // wasted with lr 0.
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::InverseSqrt;
  // InverseSqrt: lr stays at peak until this step, then decays; 0 means "right after warm-up".
  // The paper: warmup_steps = 0, decay_start = 10000 (T5's 1/sqrt(max(step, 10k)) rescaled).
  int64_t decay_start = 0;
  int64_t total_steps = 0;  // Cosine and Linear: where the decay ends
  float min_lr = 0.f;       // Cosine only: the floor

  void validate() const;  // throws ecmoe::Error on an inconsistent schedule
  float lr_at(int64_t step) const;
};

}  // namespace ecmoe
