// Training steps under P ranks (experts sharded, the rest data-parallel) equal one process over
// the global batch with the same routing groups (model.moe.group_size = a rank's tokens):
// routing identical; loss and the averaged gradients equal to 1e-5 relative. The model is a
// decoder so every rank counts the same number of targets: the mean of the ranks' mean losses is
// then the global mean (an encoder's masks count differently per rank; docs/architecture.md).
// Summation orders differ (router and attention gradients summed over ranks), hence tolerances.
#include <gtest/gtest.h>

#include "../model/model_test_util.h"
#include "mpi_test_util.h"
#include "train/data_parallel.h"

namespace ecmoe {
namespace {

using mpi_test::comm;

class MpiModel : public ::testing::TestWithParam<RouterKind> {};

TEST_P(MpiModel, RanksEqualOneProcessOverTheGlobalBatch) {
  const int P = comm().size(), b = 2, T = 10;
  ModelConfig c = testing::tiny_config(ModelKind::kDecoder, GetParam());
  c.moe.group_size = b * T;
  if (router_is_token_choice(GetParam())) c.moe.z_loss_weight = 1e-3f;  // both aux losses on
  const Batch global = testing::random_batch(c, b * P, T, 3);

  Transformer ref(c);
  FlatBuffer params(ref.table()), g_ref(ref.table());
  ref.init_params(params, 9);
  const ForwardResult f_ref = ref.forward(params, global, true, 1);
  ref.backward(params, g_ref);

  Transformer model(c);
  model.set_comm(&comm());
  FlatBuffer g(model.table());
  const Batch mine = slice_batch(global, comm());
  const ForwardResult local = model.forward(params, mine, true, 1);
  model.backward(params, g);
  average_gradients(g, comm());
  const ForwardResult f = reduce_forward_result(local, comm());

  EXPECT_NEAR(f.loss, f_ref.loss, 1e-5 * std::abs(f_ref.loss));
  EXPECT_NEAR(f.lm_loss, f_ref.lm_loss, 1e-5 * std::abs(f_ref.lm_loss));
  EXPECT_EQ(f.counted, f_ref.counted);
  const int n = b * T;
  for (int l = 0; l < c.n_layers; ++l) {
    EXPECT_TRUE(mpi_test::group_slots(ref.ffn_layer(l).plan(), comm().rank() * n, n) ==
                mpi_test::group_slots(model.ffn_layer(l).plan(), 0, n))
        << "layer " << l << " routed differently on rank " << comm().rank();
    EXPECT_EQ(f.layer_stats[l].tokens_per_expert, f_ref.layer_stats[l].tokens_per_expert) << l;
  }
  for (const auto& spec : model.table().specs())
    EXPECT_LE(mpi_test::relative_error(g.data() + spec.offset, g_ref.data() + spec.offset,
                                       size_t(spec.numel())),
              1e-5)
        << spec.name;

  // Identical gradients on every rank: the parameters stay replicated after the optimizer.
  const auto bits = comm().allgather(dist::fingerprint(
      std::string(reinterpret_cast<const char*>(g.data()), size_t(g.size()) * sizeof(float))));
  for (const uint64_t h : bits) EXPECT_EQ(h, bits[0]);
}

INSTANTIATE_TEST_SUITE_P(Routers, MpiModel,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kHash),
                         [](const auto& info) { return router_name(info.param); });

}  // namespace
}  // namespace ecmoe
