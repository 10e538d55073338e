// Threshold routing: the per-token rule, the k-th scores expert choice reports (the cutoffs'
// target), agreement with expert choice when the cutoffs are exactly this group's k-th scores,
// and gradients by central differences with the selection held fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "moe/softmax_rows.h"
#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

std::vector<float> random_scores(int n, int e, uint64_t seed) {
  std::vector<float> logits = random_normal(size_t(n) * e, seed), p(logits.size());
  softmax_rows_forward(p.data(), logits.data(), n, e);
  return p;
}

// The k-th largest score of expert i over tokens [begin, end).
template <class Scores>
float kth_score(const Scores& p, int e, int i, int begin, int end, int k) {
  std::vector<float> s;
  for (int t = begin; t < end; ++t) s.push_back(p[size_t(t) * e + i]);
  std::sort(s.begin(), s.end(), std::greater<float>());
  return s[k - 1];
}

TEST(ThresholdRouting, EveryExpertWhoseCutoffTheScoreReaches) {
  const int n = 37, e = 5;
  MoeConfig cfg = small_config(RouterKind::kExpertThreshold, 8, 12, e);
  const auto p = random_scores(n, e, 3);
  const std::vector<float> cutoffs = {0.1f, 0.2f, 0.3f, 0.25f, 0.9f};
  RouteRequest req{p.data(), nullptr, n, 2.f, cutoffs.data()};
  const RouteResult r = route_tokens(cfg, req);
  ASSERT_TRUE(plan_is_consistent(r.plan));
  EXPECT_EQ(r.plan.gate_kind, GateKind::kScore);
  int64_t slots = 0;
  for (int i = 0; i < e; ++i) {
    std::vector<int> expected;
    for (int t = 0; t < n; ++t)
      if (p[size_t(t) * e + i] >= cutoffs[i]) expected.push_back(t);
    const int b = r.plan.expert_offsets[i], end = r.plan.expert_offsets[i + 1];
    EXPECT_EQ(std::vector<int>(r.plan.slot_token.begin() + b, r.plan.slot_token.begin() + end),
              expected)
        << "expert " << i;
    for (int s = b; s < end; ++s)
      EXPECT_EQ(r.plan.slot_gate[s], p[size_t(r.plan.slot_token[s]) * e + i]);
    slots += end - b;
  }
  EXPECT_EQ(r.stats.tokens, n);
  EXPECT_DOUBLE_EQ(r.stats.mean_experts_per_token(), double(slots) / n);
  // Expert choice's k-th scores are reported for the cutoffs to follow (one group here).
  const int k = expert_choice_capacity(n, e, 2.f);
  ASSERT_EQ(r.stats.kth_score_groups, 1);
  for (int i = 0; i < e; ++i)
    EXPECT_EQ(r.stats.kth_score_sum[i], double(kth_score(p, e, i, 0, n, k)));
}

TEST(ThresholdRouting, ExpertChoiceReportsTheKthScorePerGroup) {
  const int n = 40, e = 4, group = 16;  // groups of 16, 16 and 8 tokens
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 8, 12, e);
  cfg.group_size = group;
  const auto p = random_scores(n, e, 5);
  RouteRequest req{p.data(), nullptr, n, 1.5f};
  const RouteResult r = route_tokens(cfg, req);
  ASSERT_EQ(r.stats.kth_score_groups, 3);
  for (int i = 0; i < e; ++i) {
    double sum = 0;
    for (int b = 0; b < n; b += group) {
      const int end = std::min(n, b + group);
      sum += kth_score(p, e, i, b, end, expert_choice_capacity(end - b, e, 1.5f));
    }
    EXPECT_DOUBLE_EQ(r.stats.kth_score_sum[i], sum);
    // The expert's least score among its selected tokens, in the last group, is that k-th score.
  }
  RoutingStats merged;
  merged.merge(r.stats);
  merged.merge(r.stats);
  EXPECT_EQ(merged.kth_score_groups, 6);
  EXPECT_DOUBLE_EQ(merged.mean_kth_scores()[1], r.stats.kth_score_sum[1] / 3);
}

TEST(ThresholdRouting, CutoffsAtTheKthScoresReproduceExpertChoice) {
  const int n = 50, e = 4;
  const auto p = random_scores(n, e, 8);  // continuous scores: no ties
  const MoeConfig ec = small_config(RouterKind::kExpertChoice, 8, 12, e);
  const RouteResult choice = route_tokens(ec, {p.data(), nullptr, n, 2.f});
  std::vector<float> cutoffs(e);
  for (int i = 0; i < e; ++i) cutoffs[i] = float(choice.stats.kth_score_sum[i]);
  const MoeConfig th = small_config(RouterKind::kExpertThreshold, 8, 12, e);
  const RouteResult thr = route_tokens(th, {p.data(), nullptr, n, 2.f, cutoffs.data()});
  EXPECT_EQ(thr.plan.expert_offsets, choice.plan.expert_offsets);
  EXPECT_EQ(thr.plan.slot_token, choice.plan.slot_token);
  EXPECT_EQ(thr.plan.slot_gate, choice.plan.slot_gate);
}

TEST(ThresholdRouting, UncalibratedCutoffsAreAnError) {
  const int n = 6, e = 3;
  const auto p = random_scores(n, e, 1);
  const MoeConfig th = small_config(RouterKind::kExpertThreshold, 8, 12, e);
  const std::vector<float> cutoffs = {0.2f, -1.f, 0.3f};
  EXPECT_THROW(route_tokens(th, {p.data(), nullptr, n, 2.f, cutoffs.data()}), Error);
  EXPECT_THROW(route_tokens(th, {p.data(), nullptr, n, 2.f, nullptr}), Error);
}

// L = sum(y · R), central differences; a coordinate whose perturbation changes the selection is
// skipped (counted, few may).
TEST(ThresholdRouting, GradientsByFiniteDifferences) {
  const int n = 17, d = 6, f = 10, e = 4;
  const MoeConfig cfg = small_config(RouterKind::kExpertThreshold, d, f, e);
  LayerCase c(cfg, n, 77, 1.f);
  // Each cutoff in the middle of the widest gap between an expert's sorted scores, ranks 3..13
  // (tokens get 0..e experts), so that the perturbations rarely move a score across it.
  std::vector<float> cutoffs(e);
  {
    MoeLayer probe(small_config(RouterKind::kExpertChoice, d, f, e));
    std::vector<float> y(size_t(n) * d);
    probe.forward(c.weights(), c.input(), y.data());
    for (int i = 0; i < e; ++i) {
      float widest = -1.f;
      for (int r = 3; r < 13; ++r) {
        const float hi = kth_score(probe.scores(), e, i, 0, n, r);
        const float lo = kth_score(probe.scores(), e, i, 0, n, r + 1);
        if (hi - lo > widest) {
          widest = hi - lo;
          cutoffs[i] = 0.5f * (hi + lo);
        }
      }
    }
  }
  const auto r = random_normal(size_t(n) * d, 4243);
  auto input = [&] {
    MoeInput in = c.input();
    in.cutoffs = cutoffs.data();
    return in;
  };
  auto loss_of = [&](std::vector<int>* slots) {
    MoeLayer layer(cfg);
    std::vector<float> y(size_t(n) * d);
    layer.forward(c.weights(), input(), y.data());
    *slots = layer.plan().slot_token;
    slots->insert(slots->end(), layer.plan().expert_offsets.begin(),
                  layer.plan().expert_offsets.end());
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += double(y[i]) * r[i];
    return l;
  };
  MoeLayer layer(cfg);
  std::vector<float> y(r.size()), dx(c.x.size(), 0.f);
  std::vector<int> base;
  loss_of(&base);
  layer.forward(c.weights(), input(), y.data());
  EXPECT_GT(layer.plan().slot_count(), 0);
  FlatBuffer grads(c.table);
  auto g = moe_grads(grads, "", cfg);
  layer.backward(c.weights(), g, r.data(), dx.data());

  const std::vector<GradTarget> targets = gradient_targets(c, dx, grads);
  const double h = 3e-3;
  int flipped = 0, checked = 0;
  const Rng pick(9, n);
  for (const auto& t : targets)
    for (int trial = 0; trial < 24; ++trial) {
      const size_t j = pick.below(checked * 131 + trial, t.size);
      const float saved = t.values[j];
      std::vector<int> plus, minus;
      t.values[j] = saved + float(h);
      const double lp = loss_of(&plus);
      t.values[j] = saved - float(h);
      const double lm = loss_of(&minus);
      t.values[j] = saved;
      ++checked;
      if (plus != base || minus != base) {
        ++flipped;
        continue;
      }
      const double numeric = (lp - lm) / (2 * h);
      EXPECT_NEAR(t.analytic[j], numeric, 2e-3 + 2e-2 * std::abs(numeric))
          << "d" << t.name << "[" << j << "]";
    }
  EXPECT_LE(flipped, checked / 10) << "too many selection flips";
  EXPECT_GT(checked - flipped, 50);
}

}  // namespace
