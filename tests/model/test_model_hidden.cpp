// forward_hidden / backward_from_hidden, the entry points of task heads: the same hidden states as
// the LM forward, and the LM loss's gradient fed in through them is bitwise the LM backward's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "model/lm_head.h"
#include "model_test_util.h"

namespace ecmoe {
namespace {

using testing::random_batch;
using testing::tiny_config;

class ModelHidden : public ::testing::TestWithParam<RouterKind> {};

TEST_P(ModelHidden, LmGradientThroughHiddenEqualsLmBackward) {
  const ModelConfig c = tiny_config(ModelKind::kEncoder, GetParam());
  Transformer model(c);
  FlatBuffer params(model.table()), lm_grads(model.table()), grads(model.table());
  model.init_params(params, 5);
  Batch batch = random_batch(c, 3, 7, 11);
  batch.valid_len = {7, 4, 6};
  const int64_t Nd = batch.token_count() * c.d_model;

  const ForwardResult lm = model.forward(params, batch, true, 99);
  const std::vector<float> lm_hidden(model.final_hidden(), model.final_hidden() + Nd);
  model.backward(params, lm_grads);

  const ForwardResult f = model.forward_hidden(params, batch, true, 99);
  EXPECT_EQ(f.loss, lm.loss - lm.lm_loss);  // the auxiliary losses only
  EXPECT_EQ(f.counted, 0);
  ASSERT_EQ(std::vector<float>(model.final_hidden(), model.final_hidden() + Nd), lm_hidden);
  // The LM head as a task head: its dL/d(hidden) fed back in.
  LmHead head;
  const float* table = params.get("embed.tokens");
  const LmHeadShape shape{int(batch.token_count()), c.d_model, c.vocab_size};
  lm_head_forward(nn::cpu_backend(), head, model.final_hidden(), batch.targets.data(), table,
                  shape);
  EXPECT_EQ(lm_head_loss(nn::cpu_backend(), head), lm.lm_loss);
  std::vector<float> d_hidden(Nd, 0.f);
  lm_head_backward(nn::cpu_backend(), d_hidden.data(), grads.get("embed.tokens"), head, table,
                   shape);
  model.backward_from_hidden(params, grads, d_hidden.data());
  for (const TensorSpec& spec : model.table().specs()) {
    const auto want = lm_grads.view(spec.name), got = grads.view(spec.name);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin())) << spec.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Routers, ModelHidden,
                         ::testing::Values(RouterKind::kDense, RouterKind::kExpertChoice,
                                           RouterKind::kTop2),
                         [](const auto& info) { return router_name(info.param); });

TEST(ModelHiddenApi, BackwardNeedsItsOwnForward) {
  const ModelConfig c = tiny_config(ModelKind::kEncoder, RouterKind::kExpertChoice);
  Transformer model(c);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, 5);
  Batch batch = random_batch(c, 2, 5, 3);
  batch.targets.clear();  // a task batch has no LM targets
  model.forward_hidden(params, batch, false, 0);
  EXPECT_THROW(model.backward(params, grads), Error);  // no LM head ran
  std::vector<float> d_hidden(batch.token_count() * c.d_model, 0.f);
  model.backward_from_hidden(params, grads, d_hidden.data());
  EXPECT_THROW(model.backward_from_hidden(params, grads, d_hidden.data()), Error);  // once
  EXPECT_THROW(model.forward(params, batch, false, 0), Error);  // the LM forward needs targets
}

}  // namespace
}  // namespace ecmoe
