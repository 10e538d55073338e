#include "moe/routing_groups.h"

#include <algorithm>

namespace ecmoe {

std::vector<GroupRange> routing_groups(int n_tokens, int group_size) {
  std::vector<GroupRange> groups;
  const int g = group_size <= 0 ? n_tokens : group_size;
  for (int b = 0; b < n_tokens; b += g) groups.push_back({b, std::min(g, n_tokens - b)});
  return groups;
}

}  // namespace ecmoe
