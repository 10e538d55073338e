// Under P ranks, each rank with n tokens: the expert-parallel MoE layer equals one process over
// all P·n tokens with routing groups of n (group r = rank r's tokens), for every router.
//   routing: identical (slots, their order, gates bitwise);
//   y and dx: bitwise in practice, checked to 1e-6 relative (the expert GEMMs see the same rows
//             in the same order; the router GEMM runs on n rows instead of P·n);
//   gradients summed over ranks: 1e-5 relative (the router gradient is a sum over ranks instead
//             of one GEMM over all tokens, a different float summation order).
// Auxiliary losses are off here: one process averages them over groups, a rank has one group
// (the model test checks them through the averaged gradients).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../moe/moe_test_util.h"
#include "core/error.h"
#include "mpi_test_util.h"

namespace ecmoe {
namespace {

using mpi_test::comm;

// What one process over all P·n tokens and this rank over its n tokens gave.
struct LayerRuns {
  MoeOutput whole, mine;
  bool expert_parallel = false;
};

// Runs the layer of config `c` once in one process over every rank's tokens and once on this
// rank over its own n, and checks what both tests require: the rank's slots equal one process's
// slots of its tokens, y and dx agree to 1e-6 and the gradients summed over ranks to 1e-5.
LayerRuns run_and_compare(const MoeConfig& c, int n, uint64_t case_seed, uint64_t dy_seed) {
  const int P = comm().size(), rank = comm().rank(), d = c.d_model;
  testing::LayerCase whole(c, n * P, case_seed);  // the same on every rank
  const std::vector<float> dy = testing::random_normal(size_t(n) * P * d, dy_seed);

  MoeLayer ref(c);
  std::vector<float> y_ref(size_t(n) * P * d), dx_ref(size_t(n) * P * d, 0.f);
  LayerRuns runs;
  runs.whole = ref.forward(whole.weights(), whole.input(), y_ref.data());
  FlatBuffer g_ref(whole.table);
  MoeGrads gr = moe_grads(g_ref, "", c);
  ref.backward(whole.weights(), gr, dy.data(), dx_ref.data());

  // The rank's layer reads and writes only its own experts (a sharded table's view of whole
  // tensors); summing the rank's gradients, zero outside its part, gives the whole gradient.
  MoeLayer layer(c);
  layer.set_comm(&comm());
  const int64_t first = int64_t(rank) * n * d;
  const MoeInput in{whole.x.data() + first, whole.token_ids.data() + rank * n, n, true, 0};
  std::vector<float> y(size_t(n) * d), dx(size_t(n) * d, 0.f);
  const MoeWeights w = mpi_test::owned_experts(whole.weights(), c, comm());
  runs.mine = layer.forward(w, in, y.data());
  FlatBuffer g(whole.table);
  MoeGrads gl = mpi_test::owned_experts(moe_grads(g, "", c), c, comm());
  layer.backward(w, gl, dy.data() + first, dx.data());
  comm().allreduce_sum(std::span<float>(g.data(), size_t(g.size())));
  runs.expert_parallel = layer.expert_parallel();

  EXPECT_TRUE(mpi_test::group_slots(ref.plan(), rank * n, n) ==
              mpi_test::group_slots(layer.plan(), 0, n))
      << "rank " << rank << " routed differently";
  EXPECT_LE(mpi_test::relative_error(y.data(), y_ref.data() + first, y.size()), 1e-6);
  EXPECT_LE(mpi_test::relative_error(dx.data(), dx_ref.data() + first, dx.size()), 1e-6);
  mpi_test::expect_tensors_close(g, g_ref, 1e-5);
  return runs;
}

class MpiLayer : public ::testing::TestWithParam<RouterKind> {};

TEST_P(MpiLayer, RanksEqualOneProcessOverAllTheirTokens) {
  const int n = 12;
  MoeConfig c = testing::small_config(GetParam(), 8, 12, 4);
  c.group_size = n;
  c.load_balance_weight = 0.f;
  c.z_loss_weight = 0.f;
  const LayerRuns runs = run_and_compare(c, n, 11, 5);
  EXPECT_EQ(runs.expert_parallel, comm().size() > 1 && GetParam() != RouterKind::kDense);
  EXPECT_EQ(reduce_routing_stats(runs.mine.stats, comm()).tokens, int64_t(n) * comm().size());
}

INSTANTIATE_TEST_SUITE_P(Routers, MpiLayer,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kDense,
                                           RouterKind::kHash),
                         [](const auto& info) { return router_name(info.param); });

TEST(MpiLayerConfig, ExpertsMustSplitOverRanks) {
  if (!comm().parallel()) GTEST_SKIP() << "needs more than one rank";
  MoeConfig c = testing::small_config(RouterKind::kExpertChoice, 8, 12, comm().size() + 1);
  MoeLayer layer(c);
  EXPECT_THROW(layer.set_comm(&comm()), Error);
}

TEST(MpiComm, SumsAreTheSameBitsOnEveryRankAndInRankOrder) {
  const int P = comm().size();
  std::vector<float> v(37);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * float(i + 1) / float(comm().rank() + 3);
  comm().allreduce_sum(v);
  for (size_t i = 0; i < v.size(); ++i) {
    float expect = 0.f;
    for (int r = 0; r < P; ++r) expect += 0.1f * float(i + 1) / float(r + 3);
    EXPECT_EQ(v[i], expect) << i;  // bitwise: the documented order
  }
}

}  // namespace
}  // namespace ecmoe

namespace ecmoe {
namespace {

// With global routing, P ranks of n tokens route as one process over all P·n tokens with the
// same group size (here one group of all tokens): the same slots, gates and outputs.
class MpiGlobalRouting : public ::testing::TestWithParam<RouterKind> {};

TEST_P(MpiGlobalRouting, RanksRouteLikeOneProcessOverTheGlobalBatch) {
  MoeConfig c = testing::small_config(GetParam(), 8, 12, 4);
  c.global_routing = true;
  c.load_balance_weight = 0.f;
  c.z_loss_weight = 0.f;
  const LayerRuns runs = run_and_compare(c, 10, 13, 6);
  const RoutingStats stats = reduce_routing_stats(runs.mine.stats, comm());
  EXPECT_EQ(stats.tokens, runs.whole.stats.tokens);
  EXPECT_EQ(stats.tokens_per_expert, runs.whole.stats.tokens_per_expert);
  EXPECT_EQ(stats.dropped_assignments, runs.whole.stats.dropped_assignments);
}

INSTANTIATE_TEST_SUITE_P(Routers, MpiGlobalRouting,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kHash),
                         [](const auto& info) { return router_name(info.param); });

}  // namespace
}  // namespace ecmoe
