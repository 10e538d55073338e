// Routing groups: the batch cut into consecutive groups of group_size tokens, each routed on
// its own (capacities, expert choice's top-k and the load-balancing loss are per group).
#pragma once
#include <vector>

namespace ecmoe {

struct GroupRange {
  int begin;
  int size;
};
// Consecutive groups of group_size tokens (0 = one group); the last one may be shorter.
std::vector<GroupRange> routing_groups(int n_tokens, int group_size);

}  // namespace ecmoe
