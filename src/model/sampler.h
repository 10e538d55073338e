// Next-token sampling from logits: temperature, then top-k, then top-p (nucleus), then a draw.
// temperature 0 is greedy (argmax, ties to the lower id).
#pragma once
#include <cstdint>
#include <span>

namespace ecmoe {

struct SamplingConfig {
  float temperature = 1.f;  // 0: greedy
  int top_k = 0;            // keep the k most likely ids; 0: all
  float top_p = 1.f;        // keep the fewest most likely ids whose probability reaches p
  void validate() const;    // throws ecmoe::Error naming the bad field
};

// logits [V]; u uniform in [0, 1) (the caller's seeded draw). Returns the chosen id.
int sample_token(std::span<const float> logits, const SamplingConfig& config, float u);

}  // namespace ecmoe
