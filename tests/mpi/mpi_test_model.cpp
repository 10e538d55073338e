// Training steps under P ranks (experts sharded, the rest data-parallel), each rank running its
// slice as A micro-batches (gradient accumulation), equal one process over the global batch with
// the same routing groups (model.moe.group_size = a micro-batch's tokens): routing identical;
// loss, the summed gradients and their norm equal to 1e-5 relative; each rank stores and
// initialises only its own experts. The model is an encoder, whose random masks count a different
// number of targets in each part: each part's cross-entropy is divided by the step's count
// (StepShare), so the step's loss is the global mean and its gradient the global gradient.
// Summation orders differ (router and attention gradients summed over parts and ranks), hence
// tolerances.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "mpi_test_util.h"
#include "optim/grad_clip.h"
#include "train/data_parallel.h"

namespace ecmoe {
namespace {

using mpi_test::comm;

class MpiModel : public ::testing::TestWithParam<RouterKind> {};

TEST_P(MpiModel, RanksEqualOneProcessOverTheGlobalBatch) {
  const int P = comm().size(), b = 2, T = 10, A = 2;
  ModelConfig c = testing::tiny_config(ModelKind::kEncoder, GetParam());
  c.moe.group_size = b * T;
  if (router_is_token_choice(GetParam())) c.moe.z_loss_weight = 1e-3f;  // both aux losses on
  c.moe.jitter = 0.1f;  // drawn by position in the global batch, so the same as one process
  const Batch global = testing::random_batch(c, b * A * P, T, 3);

  Transformer ref(c);
  FlatBuffer params_ref(ref.table()), g_ref(ref.table());
  ref.init_params(params_ref, 9);
  // Threshold routing needs cutoffs: one a little above the uniform score 1/e, so that some
  // tokens reach an expert and some do not (replicated router state, the same on every rank).
  FlatBuffer state(ref.state_table());
  ref.init_state(state);
  for (const auto& spec : ref.state_table().specs())
    for (float& cutoff : state.view(spec.name)) cutoff = 1.1f / float(c.moe.n_experts);
  const ForwardResult f_ref = ref.forward(params_ref, state, global, true, 1);
  ref.backward(params_ref, g_ref);

  // Each rank initialises its own part: the same values as the whole model's.
  Transformer model(c, &comm());
  FlatBuffer params(model.table()), g(model.table());
  model.init_params(params, 9);
  for (const auto& spec : model.table().specs())
    ASSERT_EQ(0, std::memcmp(params.get(spec.name), params_ref.get(spec.name) + spec.shard_offset(),
                             sizeof(float) * size_t(spec.numel())))
        << spec.name;
  std::vector<ForwardResult> local;
  for (const Batch& part : step_parts(global, comm(), A)) {
    local.push_back(model.forward(params, state, part, true, 1));
    model.backward(params, g);
  }
  reduce_gradients(g, comm());
  const ForwardResult f = reduce_forward_result(combine_parts(local), comm());

  EXPECT_NEAR(f.loss, f_ref.loss, 1e-5 * std::abs(f_ref.loss));
  EXPECT_NEAR(f.lm_loss, f_ref.lm_loss, 1e-5 * std::abs(f_ref.lm_loss));
  EXPECT_EQ(f.counted, f_ref.counted);
  const int n = b * T;  // a part's tokens; the model holds its last part's plan
  const int last_part = comm().rank() * A + A - 1;
  for (int l = 0; l < c.n_layers; ++l) {
    EXPECT_TRUE(mpi_test::group_slots(ref.ffn_layer(l).plan(), last_part * n, n) ==
                mpi_test::group_slots(model.ffn_layer(l).plan(), 0, n))
        << "layer " << l << " routed differently on rank " << comm().rank();
    EXPECT_EQ(f.layer_stats[l].tokens_per_expert, f_ref.layer_stats[l].tokens_per_expert) << l;
    int64_t routed = 0;
    for (const auto count : f.layer_stats[l].tokens_per_expert) routed += count;
    EXPECT_GT(routed, 0) << "layer " << l << " routed no token: the comparison would be empty";
  }
  mpi_test::expect_tensors_close(g, g_ref, 1e-5);
  EXPECT_NEAR(grad_norm(g, &comm()), grad_norm(g_ref), 1e-5 * grad_norm(g_ref));

  // Identical replicated gradients on every rank: those parameters stay replicated.
  std::string replicated;
  for (const auto& spec : model.table().specs())
    if (!spec.sharded())
      replicated.append(reinterpret_cast<const char*>(g.get(spec.name)),
                        sizeof(float) * size_t(spec.numel()));
  const auto bits = comm().allgather(dist::fingerprint(replicated));
  for (const uint64_t h : bits) EXPECT_EQ(h, bits[0]);
}

INSTANTIATE_TEST_SUITE_P(Routers, MpiModel,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kHash,
                                           RouterKind::kExpertThreshold),
                         [](const auto& info) { return router_name(info.param); });

}  // namespace
}  // namespace ecmoe
