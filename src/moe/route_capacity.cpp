// Capacities: tokens per expert per routing group, under expert choice and top-k token choice.
#include <algorithm>
#include <cmath>

#include "moe/routers.h"

namespace ecmoe {

int expert_choice_capacity(int group_tokens, int n_experts, float capacity_factor) {
  const long k = std::lround(double(capacity_factor) * group_tokens / n_experts);
  return int(std::clamp<long>(k, 1, std::max(1, group_tokens)));
}

int token_choice_capacity(int group_tokens, int n_experts, int choices, float capacity_factor) {
  const long c = std::lround(double(capacity_factor) * choices * group_tokens / n_experts);
  return int(std::clamp<long>(c, 1, std::max(1, group_tokens)));
}

}  // namespace ecmoe
