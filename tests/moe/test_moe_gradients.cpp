// Central finite differences for the input and every parameter, for every router, with the
// discrete routing decisions held fixed (a coordinate whose perturbation flips a selection is
// skipped and counted; few may flip).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct GradCase {
  RouterKind router;
  int n, d, f, e;
  float lb_weight, z_weight, jitter;
  int group;
  bool renormalize_gates = true;  // top-k token choice only
};

// L = sum(y · R) + weighted auxiliary losses, in double.
double loss_of(LayerCase& c, const std::vector<float>& r, std::vector<int>* slots) {
  MoeLayer layer(c.config);
  std::vector<float> y(size_t(c.n) * c.config.d_model);
  const MoeOutput out = layer.forward(c.weights(), c.input(), y.data());
  if (slots) {
    // The selection, plus each token's argmax (the load-balancing loss counts it).
    *slots = layer.plan().slot_token;
    const int e = c.config.expert_count();
    if (router_has_weights(c.config.router))
      for (int t = 0; t < c.n; ++t) {
        const float* p = layer.scores().data() + size_t(t) * e;
        slots->push_back(int(std::max_element(p, p + e) - p));
      }
  }
  double l = out.aux.weighted_total;
  for (size_t i = 0; i < y.size(); ++i) l += double(y[i]) * r[i];
  return l;
}

void check_gradients(const GradCase& gc) {
  MoeConfig cfg = small_config(gc.router, gc.d, gc.f, gc.e);
  cfg.load_balance_weight = gc.lb_weight;
  cfg.z_loss_weight = gc.z_weight;
  cfg.jitter = gc.jitter;
  cfg.group_size = gc.group;
  cfg.renormalize_gates = gc.renormalize_gates;
  LayerCase c(cfg, gc.n, 1000 + gc.n, 1.f);
  const auto r = random_normal(size_t(gc.n) * gc.d, 4242);

  MoeLayer layer(cfg);
  std::vector<float> y(r.size()), dx(c.x.size(), 0.f);
  std::vector<int> base_slots;
  loss_of(c, r, &base_slots);
  layer.forward(c.weights(), c.input(), y.data());
  FlatBuffer grads(c.table);
  auto g = moe_grads(grads, "", cfg);
  layer.backward(c.weights(), g, r.data(), dx.data());

  const std::vector<GradTarget> targets = gradient_targets(c, dx, grads);

  const double h = 3e-3;
  int flipped = 0, checked = 0;
  Rng pick(7, gc.n);
  for (const auto& t : targets)
    for (int trial = 0; trial < 24; ++trial) {
      const size_t j = pick.below(checked * 131 + trial, t.size);
      const float saved = t.values[j];
      std::vector<int> slots_plus, slots_minus;
      t.values[j] = saved + float(h);
      const double lp = loss_of(c, r, &slots_plus);
      t.values[j] = saved - float(h);
      const double lm = loss_of(c, r, &slots_minus);
      t.values[j] = saved;
      ++checked;
      if (slots_plus != base_slots || slots_minus != base_slots) {
        ++flipped;
        continue;
      }
      const double numeric = (lp - lm) / (2 * h);
      const double analytic = t.analytic[j];
      // fp32 forward: error of the difference quotient ~ eps · |L| / h, plus O(h^2) curvature.
      EXPECT_NEAR(analytic, numeric, 2e-3 + 2e-2 * std::abs(numeric))
          << router_name(gc.router) << " d" << t.name << "[" << j << "] n=" << gc.n;
    }
  EXPECT_LE(flipped, checked / 10) << router_name(gc.router) << ": too many selection flips";
}

}  // namespace

TEST(MoeGradients, FiniteDifferencesForEveryRouter) {
  const GradCase cases[] = {
      {RouterKind::kExpertChoice, 12, 6, 10, 4, 0.f, 0.f, 0.f, 0},
      {RouterKind::kExpertChoice, 31, 8, 12, 5, 0.1f, 0.05f, 0.f, 8},
      {RouterKind::kExpertChoice, 20, 8, 12, 4, 0.f, 0.f, 0.1f, 0},
      {RouterKind::kExpertChoiceCapped, 16, 6, 10, 4, 0.f, 0.f, 0.f, 0},
      {RouterKind::kTop1, 15, 6, 10, 4, 0.1f, 0.05f, 0.f, 0},
      {RouterKind::kTop2, 15, 6, 10, 4, 0.1f, 0.05f, 0.f, 0},
      {RouterKind::kTop2, 26, 8, 12, 3, 0.1f, 0.f, 0.1f, 13},
      {RouterKind::kDense, 9, 6, 10, 1, 0.f, 0.f, 0.f, 0},
      {RouterKind::kHash, 11, 6, 10, 3, 0.f, 0.f, 0.f, 0},
  };
  for (const auto& gc : cases) check_gradients(gc);
}

TEST(MoeGradients, Top2WithoutRenormalisation) {
  // Gates equal to the raw scores (not divided by the pair's sum): the gate gradient flows to
  // each selected score alone.
  GradCase gc{RouterKind::kTop2, 14, 6, 10, 4, 0.f, 0.f, 0.f, 0, /*renormalize_gates=*/false};
  MoeConfig cfg = small_config(gc.router, gc.d, gc.f, gc.e);
  cfg.renormalize_gates = false;
  LayerCase c(cfg, gc.n, 5);
  MoeLayer layer(cfg);
  std::vector<float> y(size_t(gc.n) * gc.d);
  layer.forward(c.weights(), c.input(), y.data());
  EXPECT_EQ(layer.plan().gate_kind, GateKind::kScore);
  check_gradients(gc);
}
