// The model can fit: a few hundred Adam steps on one fixed batch drive the loss to near zero, for
// the encoder and the decoder and every router. A model whose forward and backward disagree, or
// that loses a path (a residual, an expert's output), stalls far above.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/threads.h"
#include "model_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

// Plain Adam (no weight decay), written here so the test depends on the model alone.
struct Adam {
  std::vector<float> m, v;
  int t = 0;
  void step(FlatBuffer& params, const FlatBuffer& grads, float lr) {
    m.resize(params.size(), 0.f);
    v.resize(params.size(), 0.f);
    ++t;
    const float c1 = 1.f - std::pow(0.9f, float(t)), c2 = 1.f - std::pow(0.999f, float(t));
    for (int64_t i = 0; i < params.size(); ++i) {
      const float g = grads.data()[i];
      m[i] = 0.9f * m[i] + 0.1f * g;
      v[i] = 0.999f * v[i] + 0.001f * g * g;
      params.data()[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + 1e-8f);
    }
  }
};

struct FitCase {
  ModelKind kind;
  RouterKind router;
};

class ModelTraining : public ::testing::TestWithParam<FitCase> {
 protected:
  void SetUp() override { set_thread_count(1); }  // tiny model: barriers would dominate
  void TearDown() override { set_thread_count(0); }
};

TEST_P(ModelTraining, OverfitsOneBatch) {
  ModelConfig cfg = tiny_config(GetParam().kind, GetParam().router, 0.1f);
  cfg.d_model = 32;
  cfg.d_ff = 64;
  cfg.n_layers = 2;
  Transformer model(cfg);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, 1);
  // 4 sequences of 8 tokens: ~10 masked positions (encoder) or 28 next tokens (decoder) to learn.
  const Batch batch = random_batch(cfg, 4, 8, 3, 0.3f);
  Adam adam;
  double first = 0, last = 0, lm = 0;
  constexpr int kSteps = 300;
  for (int step = 0; step < kSteps; ++step) {
    grads.zero();
    const ForwardResult r = model.forward(params, batch, true, uint64_t(step));
    model.backward(params, grads);
    adam.step(params, grads, 1e-2f);
    if (step == 0) first = r.loss;
    last = r.loss;
    lm = r.lm_loss;
  }
  std::printf("loss %.4f -> %.5f (lm %.5f) after %d steps\n", first, last, lm, kSteps);
  EXPECT_GT(first, 2.5);  // near log 32 = 3.47 at the start
  EXPECT_LT(lm, 0.05);
  // Top-2's load-balancing term is >= its weight at best (1 when balanced), so only the LM part
  // can go to zero; for the others the whole loss must.
  if (!router_is_token_choice(cfg.moe.router)) {
    EXPECT_LT(last, 0.05);
  }
  // Evaluation mode (eval capacity factor, no jitter) gives a fitted model too.
  EXPECT_LT(model.forward(params, batch, false, 0).lm_loss, 0.1);
}

INSTANTIATE_TEST_SUITE_P(Routers, ModelTraining,
                         ::testing::Values(FitCase{ModelKind::kEncoder, RouterKind::kExpertChoice},
                                           FitCase{ModelKind::kEncoder, RouterKind::kTop2},
                                           FitCase{ModelKind::kEncoder, RouterKind::kHash},
                                           FitCase{ModelKind::kDecoder, RouterKind::kExpertChoice},
                                           FitCase{ModelKind::kDecoder, RouterKind::kTop1},
                                           FitCase{ModelKind::kDecoder, RouterKind::kDense}),
                         [](const auto& info) {
                           return model_kind_name(info.param.kind) + "_" +
                                  router_name(info.param.router);
                         });

}  // namespace
