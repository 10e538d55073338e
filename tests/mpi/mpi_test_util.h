// Helpers for the tests that run under mpirun: the job's communicator and a plan cut down to one
// routing group, to compare a rank's routing with one process's over all ranks' tokens.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "moe/moe_layer.h"
#include "moe/routing_plan.h"

namespace ecmoe::mpi_test {

const dist::Comm& comm();

// The slots of tokens [first, first + count) of `plan`, expert by expert in the plan's order,
// with token indices made local: what a rank routing only those tokens must produce.
struct GroupSlots {
  std::vector<int> expert_offsets;
  std::vector<int> slot_token;
  std::vector<float> slot_gate;
  bool operator==(const GroupSlots&) const = default;
};

inline GroupSlots group_slots(const RoutingPlan& plan, int first, int count) {
  GroupSlots g;
  g.expert_offsets.push_back(0);
  for (int i = 0; i < plan.n_experts; ++i) {
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s) {
      const int t = plan.slot_token[s];
      if (t < first || t >= first + count) continue;
      g.slot_token.push_back(t - first);
      g.slot_gate.push_back(plan.slot_gate[s]);
    }
    g.expert_offsets.push_back(int(g.slot_token.size()));
  }
  return g;
}

// Floats before the experts `shard` owns in a whole experts.w1/w2 tensor of config `c`.
inline int64_t owned_offset(const MoeConfig& c, ExpertShard shard) {
  return int64_t(c.n_experts / shard.ranks) * shard.rank * c.d_model * c.d_ff;
}

// The owned experts' part of whole weights or gradients: what a rank's sharded table holds.
template <typename Tensors>
Tensors owned_experts(Tensors t, const MoeConfig& c, const dist::Comm& comm) {
  const ExpertShard shard = expert_shard(c, &comm);
  t.w1 += owned_offset(c, shard);
  t.w2 += owned_offset(c, shard);
  return t;
}

// max |a - b| / max(1, max |b|)
inline double relative_error(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

// Every tensor of `mine` (a rank's buffer, expert shards included) within `tolerance` relative
// error of the same rows of `whole` (one process's buffer of the whole model).
inline void expect_tensors_close(const FlatBuffer& mine, const FlatBuffer& whole,
                                 double tolerance) {
  for (const TensorSpec& spec : mine.table().specs())
    EXPECT_LE(relative_error(mine.get(spec.name), whole.get(spec.name) + spec.shard_offset(),
                             size_t(spec.numel())),
              tolerance)
        << spec.name;
}

}  // namespace ecmoe::mpi_test
