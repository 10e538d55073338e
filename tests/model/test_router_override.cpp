// A forward may route by another router over the same weights (Transformer::forward's `router`,
// MoeInput::router): threshold training routes its first steps by expert choice this way, in the
// one model it trains. Routed so, a threshold model must be exactly an expert-choice model: the
// same loss, routing and gradients, bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "model_test_util.h"
#include "support/core/error_of.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct Pass {
  ForwardResult result;
  std::vector<std::vector<int>> routing;
  std::vector<float> grads;
};

// cutoff: every threshold cutoff's value; -1 is "not calibrated", which only a forward routed by
// another router accepts.
Pass run(const ModelConfig& config, const Batch& batch, std::optional<RouterKind> router,
         float cutoff = -1.f) {
  Transformer model(config);
  FlatBuffer params(model.table()), grads(model.table()), state(model.state_table());
  model.init_params(params, 5);
  model.init_state(state);
  for (int64_t i = 0; i < state.size(); ++i) state.data()[i] = cutoff;
  Pass p;
  p.result = model.forward(params, state, batch, /*training=*/true, 11, router);
  p.routing = model_routing(model);
  model.backward(params, grads);
  p.grads.assign(grads.data(), grads.data() + grads.size());
  return p;
}

TEST(RouterOverride, ThresholdModelRoutedByExpertChoiceIsAnExpertChoiceModel) {
  for (ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder}) {
    const ModelConfig ec = tiny_config(kind, RouterKind::kExpertChoice);
    ModelConfig threshold = ec;
    threshold.moe.router = RouterKind::kExpertThreshold;
    const Batch batch = random_batch(ec, 2, ec.seq_len, 3);
    const Pass want = run(ec, batch, std::nullopt);
    const Pass got = run(threshold, batch, RouterKind::kExpertChoice);
    EXPECT_EQ(got.result.loss, want.result.loss);
    EXPECT_EQ(got.routing, want.routing);
    ASSERT_EQ(got.grads.size(), want.grads.size());
    EXPECT_EQ(std::memcmp(got.grads.data(), want.grads.data(), got.grads.size() * sizeof(float)),
              0);
    // And it is not what the threshold router itself does (cutoffs 0: every expert takes every
    // token).
    const Pass own = run(threshold, batch, std::nullopt, 0.f);
    EXPECT_NE(own.routing, want.routing);
  }
}

TEST(RouterOverride, RefusesARouterWithOtherWeights) {
  const ModelConfig top2 = tiny_config(ModelKind::kEncoder, RouterKind::kTop2);
  const Batch batch = random_batch(top2, 2, top2.seq_len, 3);
  const std::string e = error_of([&] { run(top2, batch, RouterKind::kHash); });
  EXPECT_NE(e.find("cannot route by hash"), std::string::npos) << e;
}

}  // namespace
