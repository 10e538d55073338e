// The loss, the routing statistics and every gradient are bitwise identical at 1 and 2 threads
// (every kernel splits work at boundaries fixed by the problem size). A last-bit difference would
// flip a top-k somewhere and two runs of one seed would diverge.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/threads.h"
#include "model_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct RunResult {
  ForwardResult result;
  std::vector<float> grads;
  std::vector<float> hidden;
};

RunResult run_at(int threads, const ModelConfig& cfg, const Batch& batch) {
  set_thread_count(threads);
  Transformer model(cfg);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, 21);
  RunResult r;
  r.result = model.forward(params, batch, true, 77);
  model.backward(params, grads);
  r.grads.assign(grads.data(), grads.data() + grads.size());
  const int64_t hidden = batch.token_count() * cfg.d_model;
  r.hidden.assign(model.final_hidden(), model.final_hidden() + hidden);
  return r;
}

struct ThreadCase {
  ModelKind kind;
  RouterKind router;
};

class ModelThreads : public ::testing::TestWithParam<ThreadCase> {
 protected:
  void TearDown() override { set_thread_count(0); }
};

TEST_P(ModelThreads, BitwiseIdenticalAtOneAndTwoThreads) {
  // Big enough that every parallel loop has several chunks: 4 x 32 tokens, d 64, 4 heads.
  ModelConfig cfg = tiny_config(GetParam().kind, GetParam().router, 0.05f);
  cfg.vocab_size = 100;
  cfg.seq_len = 32;
  cfg.d_model = 64;
  cfg.n_heads = 4;
  cfg.d_ff = 128;
  cfg.n_layers = 2;
  cfg.moe.n_experts = 8;
  cfg.moe.jitter = 0.1f;  // the noise is counter-based too
  cfg.moe.z_loss_weight = 0.001f;
  Batch batch = random_batch(cfg, 4, 32, 3, 0.15f);
  batch.valid_len = {32, 20, 32, 9};
  const RunResult one = run_at(1, cfg, batch);
  const RunResult two = run_at(2, cfg, batch);
  EXPECT_EQ(std::memcmp(&one.result.loss, &two.result.loss, sizeof(double)), 0)
      << one.result.loss << " vs " << two.result.loss;
  EXPECT_EQ(one.result.counted, two.result.counted);
  for (size_t l = 0; l < one.result.layer_stats.size(); ++l)
    EXPECT_EQ(one.result.layer_stats[l].tokens_per_expert,
              two.result.layer_stats[l].tokens_per_expert);
  ASSERT_EQ(one.grads.size(), two.grads.size());
  EXPECT_EQ(std::memcmp(one.grads.data(), two.grads.data(), one.grads.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(one.hidden.data(), two.hidden.data(), one.hidden.size() * sizeof(float)),
            0);
}

INSTANTIATE_TEST_SUITE_P(
    Routers, ModelThreads,
    ::testing::Values(ThreadCase{ModelKind::kEncoder, RouterKind::kExpertChoice},
                      ThreadCase{ModelKind::kEncoder, RouterKind::kTop2},
                      ThreadCase{ModelKind::kDecoder, RouterKind::kExpertChoice},
                      ThreadCase{ModelKind::kDecoder, RouterKind::kHash}),
    [](const auto& info) {
      return model_kind_name(info.param.kind) + "_" + router_name(info.param.router);
    });

// The same seed gives the same initial parameters, a different seed different ones; and a second
// forward on the same model object (buffers reused) gives the same result as the first.
TEST(ModelDeterminism, InitAndRepeatedForward) {
  const ModelConfig cfg = tiny_config(ModelKind::kEncoder, RouterKind::kExpertChoice);
  Transformer model(cfg);
  FlatBuffer a(model.table()), b(model.table()), c(model.table());
  model.init_params(a, 5);
  model.init_params(b, 5);
  model.init_params(c, 6);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)), 0);
  const Batch batch = random_batch(cfg, 2, 8, 1);
  const Batch other = random_batch(cfg, 3, 6, 2);  // another shape in between
  const double first = model.forward(a, batch, true, 0).loss;
  model.forward(a, other, true, 0);
  EXPECT_EQ(model.forward(a, batch, true, 0).loss, first);
  // A moved model keeps its state: backward after the move uses the forward before it.
  FlatBuffer g1(model.table()), g2(model.table());
  model.backward(a, g1);
  model.forward(a, batch, true, 0);
  Transformer moved = std::move(model);
  moved.backward(a, g2);
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)), 0);
}

// Initial statistics: gains 1, biases 0, matrices with the documented std (residual outputs
// scaled by 1/sqrt(2·n_layers)).
TEST(ModelInit, DocumentedDistribution) {
  ModelConfig cfg = tiny_config(ModelKind::kEncoder, RouterKind::kExpertChoice, 0.02f);
  cfg.d_model = 64;
  cfg.d_ff = 256;
  cfg.n_layers = 2;
  Transformer model(cfg);
  FlatBuffer p(model.table());
  model.init_params(p, 3);
  for (const TensorSpec& spec : model.table().specs()) {
    const auto v = p.view(spec.name);
    double sum = 0, sq = 0;
    for (float x : v) sum += x, sq += double(x) * x;
    const double mean = sum / double(v.size()), std = std::sqrt(sq / double(v.size()));
    const std::string& n = spec.name;
    if (n.ends_with(".gain")) {
      EXPECT_EQ(mean, 1.0) << n;
    } else if (n.ends_with(".bias")) {
      EXPECT_EQ(sq, 0.0) << n;
    } else {
      const bool residual = n.ends_with("attn.out.weight") || n.ends_with("experts.w2");
      const double want = 0.02 * (residual ? 1.0 / std::sqrt(2.0 * cfg.n_layers) : 1.0);
      EXPECT_NEAR(std, want, want * 0.1) << n;  // >= 256 draws: ~5% sampling error at worst
      EXPECT_NEAR(mean, 0.0, want * 0.2) << n;
    }
  }
}

}  // namespace
