// The MoE layer in bf16 (MoeConfig::precision) against the same layer in fp32, for every router:
// the router stays fp32, so the routing plan must be identical bit for bit; the output must lie
// within a bound derived from bf16 rounding, slot by slot; the gradients within a normwise bound.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

constexpr double kU = 1.0 / 256;          // bf16 unit roundoff 2^-8
constexpr double kF32 = 1.0 / (1 << 24);  // fp32 unit roundoff 2^-24
constexpr double kGeluSlope = 1.13;       // max |gelu'(a)| = |Phi(a) + a·phi(a)| ≈ 1.129

struct LayerRun {
  RoutingPlan plan;
  std::vector<float> y, dx, grads;
};

LayerRun run(const LayerCase& c, Precision precision, const std::vector<float>& dy,
             const std::vector<float>& cutoffs) {
  MoeConfig cfg = c.config;
  cfg.precision = precision;
  MoeLayer layer(cfg);
  LayerRun r;
  r.y.resize(size_t(c.n) * cfg.d_model);
  MoeInput in = c.input();
  in.cutoffs = cutoffs.empty() ? nullptr : cutoffs.data();
  layer.forward(c.weights(), in, r.y.data());
  r.plan = layer.plan();
  FlatBuffer grads(c.table);
  MoeGrads g = moe_grads(grads, "", cfg);
  r.dx.assign(r.y.size(), 0.f);
  layer.backward(c.weights(), g, dy.data(), r.dx.data());
  r.grads.assign(grads.data(), grads.data() + grads.size());
  return r;
}

// Bound on |y_bf16 − y_fp32| for each output, propagated slot by slot (in double):
//   pre = x·W1:    |Δpre_j| <= E1_j = (2u + u² + (d+2)·2^-24)·Σ_l |x_l||W1_lj|  (operands rounded,
//                  fp32 sums);
//   hidden = gelu(pre), then rounded to bf16: |Δh_j| <= Eh_j = 1.13·E1_j + u·(|h_j| + 1.13·E1_j);
//   out = h·W2:    |Δout_c| <= Σ_j |W2_jc|·(1+u)·Eh_j + (u + (f+2)·2^-24)·Σ_j |h_j|(1+u)|W2_jc|;
//   y = Σ gate·out (the same fp32 combine): Σ_s |gate_s|·|Δout_s| + (slots+1)·2^-24·Σ|gate||out|.
// A factor 1.25 covers the second-order terms dropped above.
std::vector<double> forward_bound(const LayerCase& c, const RoutingPlan& plan) {
  const int d = c.config.d_model, f = c.config.d_ff;
  const MoeWeights w = c.weights();
  std::vector<double> bound(size_t(c.n) * d, 0.0);
  std::vector<double> e1(f), eh(f), h(f);
  for (int i = 0; i < plan.n_experts; ++i)
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s) {
      const int t = plan.slot_token[s];
      const float* x = c.x.data() + int64_t(t) * d;
      const float* w1 = w.w1 + int64_t(i) * d * f;
      const float* w2 = w.w2 + int64_t(i) * f * d;
      for (int j = 0; j < f; ++j) {
        double pre = 0, mag = 0;
        for (int l = 0; l < d; ++l) {
          pre += double(x[l]) * w1[int64_t(l) * f + j];
          mag += std::abs(double(x[l]) * w1[int64_t(l) * f + j]);
        }
        e1[j] = (2 * kU + kU * kU + (d + 2) * kF32) * mag;
        h[j] = std::abs(pre * 0.5 * (1 + std::erf(pre / std::sqrt(2.0))));
        eh[j] = kGeluSlope * e1[j] + kU * (h[j] + kGeluSlope * e1[j]);
      }
      const double gate = std::abs(double(plan.slot_gate[s]));
      for (int col = 0; col < d; ++col) {
        double prop = 0, mag = 0;
        for (int j = 0; j < f; ++j) {
          const double w2v = std::abs(double(w2[int64_t(j) * d + col]));
          prop += w2v * (1 + kU) * eh[j];
          mag += (h[j] + eh[j]) * (1 + kU) * w2v;
        }
        const double out_err = prop + (kU + (f + 2) * kF32) * mag;
        const int slots = plan.token_offsets[t + 1] - plan.token_offsets[t];
        bound[int64_t(t) * d + col] += 1.25 * gate * (out_err + (slots + 1) * kF32 * mag);
      }
    }
  return bound;
}

double rel_norm_diff(const std::vector<float>& a, const std::vector<float>& b, size_t from,
                     size_t to) {
  double num = 0, den = 0;
  for (size_t i = from; i < to; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

class MoeBf16 : public ::testing::TestWithParam<RouterKind> {};

TEST_P(MoeBf16, SamePlanOutputsAndGradientsWithinBf16Bounds) {
  const RouterKind router = GetParam();
  MoeConfig cfg = small_config(router, 64, 128, 8);
  if (router == RouterKind::kDense) cfg.n_experts = 1;
  cfg.load_balance_weight = router_is_token_choice(router) ? 0.01f : 0.f;
  cfg.z_loss_weight = router_has_weights(router) ? 0.001f : 0.f;
  const LayerCase c(cfg, 256, 77, 1.f);
  const auto dy = random_normal(c.x.size(), 78);
  std::vector<float> cutoffs;
  if (router_has_cutoffs(router)) cutoffs.assign(size_t(cfg.n_experts), 0.2f);

  const LayerRun fp32 = run(c, Precision::kFp32, dy, cutoffs);
  const LayerRun bf16 = run(c, Precision::kBf16, dy, cutoffs);

  // The router is fp32: the same plan, bit for bit (slots, tokens, gates).
  ASSERT_EQ(fp32.plan.expert_offsets, bf16.plan.expert_offsets);
  ASSERT_EQ(fp32.plan.slot_token, bf16.plan.slot_token);
  ASSERT_EQ(0, std::memcmp(fp32.plan.slot_gate.data(), bf16.plan.slot_gate.data(),
                           fp32.plan.slot_gate.size() * sizeof(float)));

  const std::vector<double> bound = forward_bound(c, fp32.plan);
  size_t differ = 0;
  for (size_t i = 0; i < fp32.y.size(); ++i) {
    ASSERT_LE(std::abs(double(bf16.y[i]) - fp32.y[i]), bound[i] + 1e-30) << "y at " << i;
    differ += bf16.y[i] != fp32.y[i];
  }
  EXPECT_GT(differ, fp32.y.size() / 2) << "the bf16 path should round";

  // Gradients, normwise. Each bf16 GEMM perturbs its result by at most 2u·|A||B| elementwise;
  // with independent rounding errors the normwise relative effect of one GEMM is about u. Every
  // gradient here depends on at most four GEMMs (two forward, two backward), and we allow 4u for
  // each: ‖Δg‖ / ‖g‖ <= 16u = 1/16. Gross errors (a wrong operand, transpose or stale copy) give
  // O(1). The bf16 gradients must also differ from the fp32 ones (the path is really taken).
  EXPECT_LE(rel_norm_diff(bf16.dx, fp32.dx, 0, fp32.dx.size()), 16 * kU) << "dx";
  EXPECT_NE(0, std::memcmp(bf16.dx.data(), fp32.dx.data(), fp32.dx.size() * sizeof(float)));
  for (const TensorSpec& spec : c.table.specs()) {
    const size_t from = size_t(spec.offset), to = from + size_t(spec.numel());
    EXPECT_LE(rel_norm_diff(bf16.grads, fp32.grads, from, to), 16 * kU) << spec.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Routers, MoeBf16,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kDense, RouterKind::kHash,
                                           RouterKind::kExpertThreshold),
                         [](const auto& info) { return router_name(info.param); });

// bf16 layer results (output and every gradient) are bitwise identical at 1 and 2 threads, on the
// native kernel and on the fallback.
TEST(MoeBf16Threads, BitwiseIdenticalAtOneAndTwoThreads) {
  for (bool fallback : {false, true}) {
    set_bf16_fallback(fallback);
    const MoeConfig cfg = small_config(RouterKind::kExpertChoice, 64, 160, 8);
    const LayerCase c(cfg, 600, 5, 1.f);
    const auto dy = random_normal(c.x.size(), 6);
    omp_set_num_threads(1);
    const LayerRun one = run(c, Precision::kBf16, dy, {});
    omp_set_num_threads(2);
    const LayerRun two = run(c, Precision::kBf16, dy, {});
    EXPECT_EQ(0, std::memcmp(one.y.data(), two.y.data(), one.y.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(one.dx.data(), two.dx.data(), one.dx.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(one.grads.data(), two.grads.data(), one.grads.size() * sizeof(float)))
        << "fallback=" << fallback;
  }
  set_bf16_fallback(false);
}

}  // namespace
