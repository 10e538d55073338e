// Full-model gradient check: central finite differences of the loss (LM loss + weighted
// auxiliary losses) against backward, on a random sample of coordinates of EVERY tensor of the
// table, for the encoder and the decoder and four routers. The discrete routing decisions are
// held fixed: a coordinate whose perturbation changes any layer's routing is skipped and counted,
// and only a few may be.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/threads.h"
#include "model_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct GradCase {
  ModelKind kind;
  RouterKind router;
  int group_size;
};

std::string case_name(const ::testing::TestParamInfo<GradCase>& info) {
  std::string name = model_kind_name(info.param.kind) + "_" + router_name(info.param.router);
  if (info.param.group_size) name += "_grouped";
  return name;
}

// Perturbation and tolerance. Parameters are O(0.3), gradients O(1e-2), the loss O(3) with ~1e-6
// of float32 rounding noise. Measured worst |fd − grad| on these cases: 2.5e-4 at h = 1e-3 (noise
// dominates), 7e-5 at h = 3e-3, 6e-5 at h = 1e-2, where expert choice flips a selection for 23%
// of the coordinates (3% at 3e-3). The test asks |fd − grad| <= kAbsTol + kRelTol·|grad|: 4x the
// measured worst, while a missing term (a dropped residual, a wrong gate, the aux loss left out)
// is off by about the gradient itself, 30x the tolerance.
constexpr float kStep = 3e-3f;
constexpr double kAbsTol = 2e-4;
constexpr double kRelTol = 1e-2;
constexpr int kSamplesPerTensor = 8;

// One thread: hundreds of tiny forwards are all barrier overhead, and under load (ctest -j on two
// cores) OpenMP's spinning turns each barrier into a scheduler slice. Thread invariance has its
// own test (test_model_threads).
class ModelGradients : public ::testing::TestWithParam<GradCase> {
 protected:
  void SetUp() override { set_thread_count(1); }
};

TEST_P(ModelGradients, FiniteDifferencesMatchBackward) {
  const GradCase gc = GetParam();
  ModelConfig cfg = tiny_config(gc.kind, gc.router);
  cfg.moe.group_size = gc.group_size;
  if (router_has_weights(gc.router)) {
    // Exercise the auxiliary losses' gradients too.
    cfg.moe.load_balance_weight = 0.05f;
    cfg.moe.z_loss_weight = 0.01f;
  }
  Transformer model(cfg);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, 11);
  // A sharper router (logits of std ~3 rather than ~1) puts its decisions further from ties, so
  // fewer coordinates flip one.
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string name = Transformer::layer_prefix(l) + "ffn.router.weight";
    if (model.table().contains(name))
      for (float& w : params.view(name)) w *= 3.f;
  }
  Batch batch = random_batch(cfg, 2, 8, 5);
  batch.valid_len = {8, 6};  // sequence 1 padded: keys 6, 7 masked, no loss there
  batch.targets[14] = batch.targets[15] = -1;

  const ForwardResult base = model.forward(params, batch, true, 3);
  ASSERT_GT(base.counted, 0);
  const auto base_routing = model_routing(model);
  model.backward(params, grads);

  int checked = 0, skipped = 0, zero_tensors = 0;
  double worst_excess = 0;  // max of |fd − grad| / (kAbsTol + kRelTol·|grad|)
  std::string worst_where;
  const Rng pick(99, 1);
  uint64_t draw = 0;
  for (const TensorSpec& spec : model.table().specs()) {
    const int64_t n = spec.numel();
    bool any_nonzero = false;
    for (int64_t j = 0; j < n; ++j) any_nonzero |= grads.data()[spec.offset + j] != 0.f;
    zero_tensors += !any_nonzero;
    const int samples = int(std::min<int64_t>(n, kSamplesPerTensor));
    for (int s = 0; s < samples; ++s) {
      const int64_t j = n <= kSamplesPerTensor ? s : int64_t(pick.below(draw++, n));
      float& x = params.data()[spec.offset + j];
      const float saved = x;
      x = saved + kStep;
      const double plus = model.forward(params, batch, true, 3).loss;
      const bool same_plus = model_routing(model) == base_routing;
      x = saved - kStep;
      const double minus = model.forward(params, batch, true, 3).loss;
      const bool same_minus = model_routing(model) == base_routing;
      x = saved;
      if (!same_plus || !same_minus) {
        ++skipped;
        continue;
      }
      ++checked;
      // The step actually taken, in float32 arithmetic: (saved + h) − (saved − h).
      const double h2 = double(saved + kStep) - double(saved - kStep);
      const double fd = (plus - minus) / h2;
      const double an = grads.data()[spec.offset + j];
      const double excess = std::abs(fd - an) / (kAbsTol + kRelTol * std::abs(an));
      if (excess > worst_excess) {
        worst_excess = excess;
        worst_where = spec.name + "[" + std::to_string(j) + "] fd " + std::to_string(fd) +
                      " grad " + std::to_string(an);
      }
      EXPECT_LE(excess, 1.0) << spec.name << "[" << j << "]: finite difference " << fd
                             << ", backward " << an;
    }
  }
  std::printf("checked %d, skipped %d, worst %.3f of tolerance at %s\n", checked, skipped,
              worst_excess, worst_where.c_str());
  // Few coordinates may flip a routing decision at this step size.
  EXPECT_LE(skipped * 10, checked + skipped) << "too many coordinates change the routing";
  EXPECT_GT(checked, 100);
  // Only the position rows past T (table 10, batch 8) and tokens never seen may be all-zero, and
  // no whole tensor: a tensor with no gradient at all means a path is missing.
  EXPECT_EQ(zero_tensors, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Routers, ModelGradients,
    ::testing::Values(GradCase{ModelKind::kEncoder, RouterKind::kExpertChoice, 0},
                      GradCase{ModelKind::kEncoder, RouterKind::kTop2, 0},
                      GradCase{ModelKind::kEncoder, RouterKind::kDense, 0},
                      GradCase{ModelKind::kEncoder, RouterKind::kHash, 0},
                      GradCase{ModelKind::kDecoder, RouterKind::kExpertChoice, 0},
                      GradCase{ModelKind::kDecoder, RouterKind::kTop2, 0},
                      GradCase{ModelKind::kDecoder, RouterKind::kDense, 0},
                      GradCase{ModelKind::kDecoder, RouterKind::kHash, 0},
                      // Per-sequence routing groups.
                      GradCase{ModelKind::kEncoder, RouterKind::kExpertChoice, 8},
                      GradCase{ModelKind::kDecoder, RouterKind::kTop1, 8}),
    case_name);

// The reported loss is the LM loss plus every layer's weighted auxiliary loss, and each layer
// reports its routing statistics.
TEST(ModelLoss, LossIsLmLossPlusWeightedAux) {
  ModelConfig cfg = tiny_config(ModelKind::kEncoder, RouterKind::kTop2);
  cfg.moe_every = 1;  // every layer MoE
  cfg.moe.z_loss_weight = 0.01f;
  Transformer model(cfg);
  FlatBuffer params(model.table());
  model.init_params(params, 1);
  const Batch batch = random_batch(cfg, 2, 8, 2);
  const ForwardResult r = model.forward(params, batch, true, 0);
  ASSERT_EQ(int(r.layer_stats.size()), cfg.n_layers);
  for (const RoutingStats& s : r.layer_stats) EXPECT_EQ(s.tokens, 16);
  EXPECT_GT(r.aux.z_loss, 0.f);
  EXPECT_GT(r.aux.load_balance, 0.f);
  EXPECT_NEAR(r.aux.weighted_total, 0.01f * r.aux.load_balance + 0.01f * r.aux.z_loss, 1e-6);
  EXPECT_NEAR(r.loss, r.lm_loss + r.aux.weighted_total, 1e-6);
  int64_t counted = 0;
  for (int32_t t : batch.targets) counted += t >= 0;
  EXPECT_EQ(r.counted, counted);
  // Cross-entropy of a near-uniform model is near log V.
  EXPECT_NEAR(r.lm_loss, std::log(32.0), 1.5);
}

TEST(ModelLoss, RejectsBadBatches) {
  const ModelConfig cfg = tiny_config(ModelKind::kDecoder, RouterKind::kDense);
  Transformer model(cfg);
  FlatBuffer params(model.table()), grads(model.table());
  model.init_params(params, 1);
  EXPECT_THROW(model.backward(params, grads), Error);  // no forward yet
  Batch b = random_batch(cfg, 2, 8, 1);
  b.tokens[3] = 32;
  EXPECT_THROW(model.forward(params, b, true, 0), Error);
  b = random_batch(cfg, 2, 8, 1);
  b.targets[3] = 40;
  EXPECT_THROW(model.forward(params, b, true, 0), Error);
  b = random_batch(cfg, 1, 11, 1);  // longer than the position table
  EXPECT_THROW(model.forward(params, b, true, 0), Error);
  b = random_batch(cfg, 2, 8, 1);
  model.forward(params, b, true, 0);
  model.backward(params, grads);
  EXPECT_THROW(model.backward(params, grads), Error);  // once per forward
}

}  // namespace
