// The layer end to end: equivalences between routers, the reference, determinism, bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "moe_test_util.h"
#include "support/moe/reference.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {
std::vector<float> run_forward(LayerCase& c, MoeLayer& layer, MoeOutput* out = nullptr,
                               bool training = true) {
  std::vector<float> y(size_t(c.n) * c.config.d_model);
  MoeOutput o = layer.forward(c.weights(), c.input(training), y.data());
  if (out) *out = o;
  return y;
}
}  // namespace

TEST(MoeLayer, EveryRouterMatchesThePerTokenReferenceOnItsOwnPlan) {
  for (RouterKind kind :
       {RouterKind::kExpertChoice, RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
        RouterKind::kTop2, RouterKind::kDense, RouterKind::kHash})
    for (int n : {1, 5, 33}) {
      MoeConfig cfg = small_config(kind, 8, 12, 4);
      if (kind == RouterKind::kExpertChoiceCapped && n * 2 < 4) continue;  // infeasible group
      LayerCase c(cfg, n, 10 + n);
      MoeLayer layer(cfg);
      const auto y = run_forward(c, layer);
      const auto ref = reference::moe_forward(layer.plan(), c.x.data(), c.weights().w1,
                                              c.weights().w2, cfg.d_model, cfg.d_ff);
      EXPECT_LT(max_abs_diff(y, ref), 1e-4) << router_name(kind) << " n=" << n;
    }
}

TEST(MoeLayer, ExpertChoiceWithKEqualNIsTheDenseSoftmaxMixture) {
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 8, 12, 4);
  const int n = 9;
  cfg.capacity_factor_train = 4.f;  // k = c·n/e = n
  LayerCase c(cfg, n, 3);
  MoeLayer layer(cfg);
  const auto y = run_forward(c, layer);
  const auto ref = reference::dense_mixture(layer.scores().data(), c.x.data(), c.weights().w1,
                                            c.weights().w2, n, 4, 8, 12);
  EXPECT_LT(max_abs_diff(y, ref), 1e-4);
}

TEST(MoeLayer, TokenChoiceWithAllExpertsAndNoCapacityLimitIsTheDenseMixture) {
  MoeConfig cfg = small_config(RouterKind::kTop2, 8, 12, 4);
  cfg.token_choice_k = 4;
  cfg.renormalize_gates = false;
  cfg.capacity_factor_train = 1.f;  // capacity = round(1 · 4 · n / 4) = n: nothing dropped
  const int n = 11;
  LayerCase c(cfg, n, 4);
  MoeLayer layer(cfg);
  MoeOutput out;
  const auto y = run_forward(c, layer, &out);
  EXPECT_EQ(out.stats.dropped_assignments, 0);
  const auto ref = reference::dense_mixture(layer.scores().data(), c.x.data(), c.weights().w1,
                                            c.weights().w2, n, 4, 8, 12);
  EXPECT_LT(max_abs_diff(y, ref), 1e-4);
}

TEST(MoeLayer, OneExpertTop1IsTheDenseFfn) {
  MoeConfig top1 = small_config(RouterKind::kTop1, 8, 12, 1);
  top1.capacity_factor_train = 1.f;
  MoeConfig dense = small_config(RouterKind::kDense, 8, 12, 1);
  const int n = 7;
  LayerCase a(top1, n, 5), b(dense, n, 5);
  // Same expert weights in both.
  std::memcpy(b.params.get("experts.w1"), a.params.get("experts.w1"), sizeof(float) * 8 * 12);
  std::memcpy(b.params.get("experts.w2"), a.params.get("experts.w2"), sizeof(float) * 8 * 12);
  MoeLayer la(top1), lb(dense);
  const auto ya = run_forward(a, la), yb = run_forward(b, lb);
  for (size_t i = 0; i < ya.size(); ++i) EXPECT_FLOAT_EQ(ya[i], yb[i]);
}

TEST(MoeLayer, AHandBuiltPlanGivesTheSameOutputThroughEveryRoutersPath) {
  const int n = 6, e = 3;
  std::vector<Assignment> hand = {
      {0, 1, 0.5f}, {0, 4, 1.f}, {1, 1, 0.25f}, {2, 5, 2.f}, {2, 0, 1.f}};
  std::vector<float> first;
  for (RouterKind kind : {RouterKind::kExpertChoice, RouterKind::kExpertChoiceCapped,
                          RouterKind::kTop1, RouterKind::kTop2, RouterKind::kHash}) {
    MoeConfig cfg = small_config(kind, 8, 12, e);
    LayerCase c(cfg, n, 8);
    MoeLayer layer(cfg);
    std::vector<float> y(n * 8);
    layer.forward_with_plan(c.weights(), c.input(),
                            make_routing_plan(n, e, GateKind::kConstant, hand), y.data());
    if (first.empty()) {
      first = y;
      const auto ref =
          reference::moe_forward(layer.plan(), c.x.data(), c.weights().w1, c.weights().w2, 8, 12);
      EXPECT_LT(max_abs_diff(y, ref), 1e-4);
    } else {
      for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], first[i]) << router_name(kind);
    }
  }
}

TEST(MoeLayer, TokensNoExpertTookGetZero) {
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 8, 12, 2);
  cfg.capacity_factor_train = 0.5f;  // k = 0.5 · 16 / 2 = 4 of 16 tokens per expert
  LayerCase c(cfg, 16, 6);
  MoeLayer layer(cfg);
  MoeOutput out;
  const auto y = run_forward(c, layer, &out);
  ASSERT_GT(out.stats.experts_per_token[0], 0);
  for (int t = 0; t < 16; ++t)
    if (layer.plan().token_offsets[t] == layer.plan().token_offsets[t + 1]) {
      for (int j = 0; j < 8; ++j) EXPECT_EQ(y[t * 8 + j], 0.f);
    }
}

TEST(MoeLayer, EvaluationUsesTheEvalCapacityFactor) {
  MoeConfig cfg = small_config(RouterKind::kTop1, 8, 12, 4);  // 1.25 train, 2.0 eval
  LayerCase c(cfg, 40, 7);
  MoeLayer layer(cfg);
  MoeOutput train, eval;
  run_forward(c, layer, &train, true);
  run_forward(c, layer, &eval, false);
  EXPECT_EQ(train.stats.capacity, 13);  // round(1.25 · 40 / 4)
  EXPECT_EQ(eval.stats.capacity, 20);
}

TEST(MoeLayer, StatisticsAddUp) {
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 8, 12, 4);
  LayerCase c(cfg, 50, 9);
  MoeLayer layer(cfg);
  MoeOutput out;
  run_forward(c, layer, &out);
  int64_t tokens = 0, slots = 0;
  for (int b = 0; b < 6; ++b) tokens += out.stats.experts_per_token[b];
  for (int64_t l : out.stats.tokens_per_expert) slots += l;
  EXPECT_EQ(tokens, 50);
  EXPECT_EQ(slots, 4 * 25);  // k = round(2 · 50 / 4) = 25
  EXPECT_NEAR(out.stats.mean_experts_per_token(), 2.0, 1e-12);
  EXPECT_GT(out.stats.mean_router_entropy(), 0.0);
  EXPECT_LE(out.stats.mean_router_entropy(), std::log(4.0) + 1e-9);
}

TEST(MoeLayer, BitwiseIdenticalAtOneAndTwoThreads) {
  for (RouterKind kind : {RouterKind::kExpertChoice, RouterKind::kExpertChoiceCapped,
                          RouterKind::kTop2, RouterKind::kDense}) {
    MoeConfig cfg = small_config(kind, 64, 96, 8);
    cfg.jitter = 0.01f;
    cfg.z_loss_weight = 0.001f;
    LayerCase c(cfg, 300, 21, 0.1f);
    std::vector<float> y[2], dx[2];
    std::vector<FlatBuffer> grads;
    std::vector<int> slots[2];
    for (int run = 0; run < 2; ++run) {
      omp_set_num_threads(run + 1);
      MoeLayer layer(cfg);
      y[run] = run_forward(c, layer);
      slots[run] = layer.plan().slot_token;
      grads.emplace_back(c.table);
      auto g = moe_grads(grads.back(), "", cfg);
      dx[run].assign(c.x.size(), 0.f);
      const auto dy = random_normal(y[run].size(), 77);
      layer.backward(c.weights(), g, dy.data(), dx[run].data());
    }
    omp_set_num_threads(2);
    EXPECT_EQ(slots[0], slots[1]) << router_name(kind);
    EXPECT_EQ(0, std::memcmp(y[0].data(), y[1].data(), y[0].size() * 4)) << router_name(kind);
    EXPECT_EQ(0, std::memcmp(dx[0].data(), dx[1].data(), dx[0].size() * 4)) << router_name(kind);
    EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * 4))
        << router_name(kind);
  }
}

TEST(MoeLayer, BadConfigurationsAreClearErrors) {
  auto expect_error = [](MoeConfig cfg, const std::string& fragment) {
    try {
      MoeLayer layer(cfg);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  MoeConfig cfg = small_config(RouterKind::kExpertChoice);
  cfg.n_experts = 0;
  expect_error(cfg, "n_experts");
  cfg = small_config(RouterKind::kExpertChoice);
  cfg.capacity_factor_train = 0.f;
  expect_error(cfg, "capacity factor");
  cfg = small_config(RouterKind::kExpertChoice);
  cfg.capacity_factor_eval = -1.f;
  expect_error(cfg, "capacity factor");
  cfg = small_config(RouterKind::kExpertChoiceCapped);
  cfg.capped.max_experts_per_token = 0;
  expect_error(cfg, "cap on experts per token");
  cfg = small_config(RouterKind::kExpertChoice);
  cfg.d_model = 0;
  expect_error(cfg, "d_model");
  EXPECT_THROW(parse_router_kind("top3"), Error);
}

TEST(MoeLayer, MismatchedPlanShapeIsAnError) {
  MoeConfig cfg = small_config(RouterKind::kTop1, 8, 12, 4);
  LayerCase c(cfg, 5, 1);
  MoeLayer layer(cfg);
  std::vector<float> y(5 * 8);
  std::vector<Assignment> none;
  EXPECT_THROW(
      layer.forward_with_plan(c.weights(), c.input(),
                              make_routing_plan(6, 4, GateKind::kConstant, none), y.data()),
      Error);
  EXPECT_THROW(
      layer.forward_with_plan(c.weights(), c.input(),
                              make_routing_plan(5, 3, GateKind::kConstant, none), y.data()),
      Error);
}
