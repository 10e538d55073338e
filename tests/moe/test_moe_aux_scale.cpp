// MoeLayer::backward's aux_scale: the gradient of aux_scale times the weighted auxiliary losses
// (what a caller whose loss weighs them differently, or leaves them out, needs; the PyTorch
// module passes the gradient autograd brings to its aux_loss output).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct Grads {
  std::vector<float> dx, params;
};

Grads backward(const MoeConfig& cfg, const LayerCase& c, const std::vector<float>& dy,
               float aux_scale) {
  MoeLayer layer(cfg);
  std::vector<float> y(c.x.size());
  layer.forward(c.weights(), c.input(), y.data());
  FlatBuffer grads(c.table);
  MoeGrads g = moe_grads(grads, "", cfg);
  Grads out;
  out.dx.assign(c.x.size(), 0.f);
  layer.backward(c.weights(), g, dy.data(), out.dx.data(), aux_scale);
  out.params.assign(grads.data(), grads.data() + grads.size());
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(MoeAuxScale, ZeroLeavesTheAuxLossesOutAndOtherScalesAreLinear) {
  MoeConfig cfg = small_config(RouterKind::kTop2, 16, 24, 4);
  cfg.load_balance_weight = 0.1f;
  cfg.z_loss_weight = 0.01f;
  const LayerCase c(cfg, 40, 11, 1.f);
  const std::vector<float> dy = random_normal(c.x.size(), 12);

  MoeConfig without = cfg;
  without.load_balance_weight = without.z_loss_weight = 0.f;
  const Grads none = backward(without, c, dy, 1.f);
  const Grads zero = backward(cfg, c, dy, 0.f);
  const Grads one = backward(cfg, c, dy, 1.f);
  const Grads scaled = backward(cfg, c, dy, 2.5f);
  EXPECT_TRUE(same_bits(zero.dx, none.dx));
  EXPECT_TRUE(same_bits(zero.params, none.params));
  EXPECT_FALSE(same_bits(one.params, zero.params));  // the aux losses reach the router

  // g(s) = g(0) + s·(g(1) − g(0)), up to float32 rounding of the sums.
  auto check = [](const std::vector<float>& g0, const std::vector<float>& g1,
                  const std::vector<float>& gs, const char* what) {
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < g0.size(); ++i) {
      const double want = g0[i] + 2.5 * (double(g1[i]) - g0[i]);
      worst = std::max(worst, std::abs(gs[i] - want));
      scale = std::max(scale, std::abs(want));
    }
    EXPECT_LE(worst, 1e-5 * scale) << what;
  };
  check(zero.dx, one.dx, scaled.dx, "dx");
  check(zero.params, one.params, scaled.params, "parameters");
}

}  // namespace
