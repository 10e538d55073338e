// Router invariants as properties over many random shapes, awkward ones included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <set>
#include <vector>

#include "core/error.h"
#include "moe/capped_solver.h"
#include "moe/routers.h"
#include "moe/routing_groups.h"
#include "moe/softmax_rows.h"
#include "moe_test_util.h"
#include "support/moe/reference.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

std::vector<float> random_probs(int n, int e, uint64_t seed, float temperature = 1.f) {
  auto logits = random_normal(size_t(n) * e, seed, temperature);
  std::vector<float> probs(logits.size());
  softmax_rows_forward(probs.data(), logits.data(), n, e);
  return probs;
}

struct Shape {
  int n, e;
  float c;
  int group;
};

std::vector<Shape> awkward_shapes() {
  std::vector<Shape> shapes = {
      {1, 1, 2.f, 0},  {1, 4, 2.f, 0},  {3, 8, 2.f, 0},   {5, 4, 0.5f, 0},  {7, 3, 2.f, 0},
      {10, 3, 1.f, 0}, {16, 4, 8.f, 0}, {17, 5, 1.3f, 4}, {64, 8, 2.f, 16}, {100, 7, 3.f, 33}};
  Rng rng(5, 5);
  for (int j = 0; j < 30; ++j)
    shapes.push_back({1 + int(rng.below(3 * j, 200)), 1 + int(rng.below(3 * j + 1, 16)),
                      0.25f + 4.f * rng.uniform(3 * j + 2), int(rng.below(3 * j + 2, 3)) * 16});
  return shapes;
}

}  // namespace

TEST(ExpertChoice, EveryExpertGetsExactlyKTokensPerGroup) {
  int case_id = 0;
  for (const Shape& s : awkward_shapes()) {
    MoeConfig cfg = small_config(RouterKind::kExpertChoice, 4, 4, s.e);
    cfg.group_size = s.group;
    const auto probs = random_probs(s.n, s.e, ++case_id);
    const auto r = route_tokens(cfg, {probs.data(), nullptr, s.n, s.c});
    ASSERT_TRUE(plan_is_consistent(r.plan));
    for (const auto& g : routing_groups(s.n, s.group)) {
      const int k = expert_choice_capacity(g.size, s.e, s.c);
      ASSERT_GE(k, 1);
      ASSERT_LE(k, g.size);
      for (int i = 0; i < s.e; ++i) {
        int in_group = 0;
        for (int slot = r.plan.expert_offsets[i]; slot < r.plan.expert_offsets[i + 1]; ++slot)
          in_group +=
              r.plan.slot_token[slot] >= g.begin && r.plan.slot_token[slot] < g.begin + g.size;
        EXPECT_EQ(in_group, k) << "n=" << s.n << " e=" << s.e << " c=" << s.c << " expert " << i;
      }
    }
  }
}

TEST(ExpertChoice, MatchesFullSortReferenceAndGatesAreScores) {
  for (int seed = 1; seed <= 20; ++seed) {
    const int n = 5 + seed * 3, e = 1 + seed % 6;
    const auto probs = random_probs(n, e, seed);
    MoeConfig cfg = small_config(RouterKind::kExpertChoice, 4, 4, e);
    const auto r = route_tokens(cfg, {probs.data(), nullptr, n, 2.f});
    const auto ref =
        reference::expert_choice(probs.data(), n, e, expert_choice_capacity(n, e, 2.f));
    for (int i = 0; i < e; ++i) {
      std::vector<int> got(r.plan.slot_token.begin() + r.plan.expert_offsets[i],
                           r.plan.slot_token.begin() + r.plan.expert_offsets[i + 1]);
      EXPECT_EQ(got, ref[i]);
      for (int s = r.plan.expert_offsets[i]; s < r.plan.expert_offsets[i + 1]; ++s)
        EXPECT_EQ(r.plan.slot_gate[s], probs[r.plan.slot_token[s] * e + i]);
    }
  }
}

TEST(ExpertChoice, TiesBreakByLowerTokenIndex) {
  const int n = 10, e = 2;
  std::vector<float> probs(n * e, 0.5f);  // every score equal
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 4, 4, e);
  const auto r = route_tokens(cfg, {probs.data(), nullptr, n, 0.6f});  // k = 3
  for (int i = 0; i < e; ++i) {
    std::vector<int> got(r.plan.slot_token.begin() + r.plan.expert_offsets[i],
                         r.plan.slot_token.begin() + r.plan.expert_offsets[i + 1]);
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  }
}

TEST(ExpertChoice, CapacityLargerThanGroupIsClamped) {
  const int n = 3, e = 2;
  const auto probs = random_probs(n, e, 3);
  MoeConfig cfg = small_config(RouterKind::kExpertChoice, 4, 4, e);
  const auto r = route_tokens(cfg, {probs.data(), nullptr, n, 100.f});
  EXPECT_EQ(r.stats.capacity, n);
  EXPECT_EQ(r.plan.slot_count(), n * e);
  EXPECT_EQ(r.stats.experts_per_token[2], n);  // every token to both experts
}

TEST(TokenChoice, NeverExceedsCapacityAndDropsExactlyTheOverflow) {
  int case_id = 100;
  for (RouterKind kind : {RouterKind::kTop1, RouterKind::kTop2})
    for (bool prioritized : {false, true})
      for (const Shape& s : awkward_shapes()) {
        MoeConfig cfg = small_config(kind, 4, 4, s.e);
        if (cfg.choices_per_token() > s.e) continue;
        cfg.group_size = s.group;
        cfg.batch_prioritized = prioritized;
        const int k = cfg.choices_per_token();
        // Low temperature: skewed routing, so capacity actually binds.
        const auto probs = random_probs(s.n, s.e, ++case_id, 3.f);
        const auto r = route_tokens(cfg, {probs.data(), nullptr, s.n, s.c});
        ASSERT_TRUE(plan_is_consistent(r.plan));
        int64_t expected_dropped = 0;
        for (const auto& g : routing_groups(s.n, s.group)) {
          const int cap = token_choice_capacity(g.size, s.e, k, s.c);
          std::vector<int> demand(s.e, 0), filled(s.e, 0);
          for (int t = g.begin; t < g.begin + g.size; ++t) {
            std::vector<int> order(s.e);
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(),
                             [&](int a, int b) { return probs[t * s.e + a] > probs[t * s.e + b]; });
            for (int c = 0; c < k; ++c) ++demand[order[c]];
          }
          for (int i = 0; i < s.e; ++i) {
            for (int slot = r.plan.expert_offsets[i]; slot < r.plan.expert_offsets[i + 1]; ++slot)
              filled[i] +=
                  r.plan.slot_token[slot] >= g.begin && r.plan.slot_token[slot] < g.begin + g.size;
            EXPECT_LE(filled[i], cap);
            EXPECT_EQ(filled[i], std::min(demand[i], cap));
            expected_dropped += std::max(0, demand[i] - cap);
          }
        }
        EXPECT_EQ(r.stats.dropped_assignments, expected_dropped);
        EXPECT_EQ(r.stats.requested_assignments, int64_t(s.n) * k);
      }
}

TEST(TokenChoice, FirstChoicesAreServedBeforeSecondChoices) {
  // Four tokens all prefer expert 0, then expert 1; capacity 2 per expert.
  const int n = 4, e = 2;
  std::vector<float> probs = {0.9f, 0.1f, 0.8f, 0.2f, 0.7f, 0.3f, 0.6f, 0.4f};
  MoeConfig cfg = small_config(RouterKind::kTop2, 4, 4, e);
  const auto r = route_tokens(cfg, {probs.data(), nullptr, n, 1.f});  // cap = round(1*2*4/2)=4
  EXPECT_EQ(r.stats.dropped_assignments, 0);
  MoeConfig top1 = small_config(RouterKind::kTop1, 4, 4, e);
  const auto r1 = route_tokens(top1, {probs.data(), nullptr, n, 1.f});  // cap 2
  std::vector<int> expert0(r1.plan.slot_token.begin(),
                           r1.plan.slot_token.begin() + r1.plan.expert_offsets[1]);
  EXPECT_EQ(expert0, (std::vector<int>{0, 1}));  // position order: the first two tokens
  top1.batch_prioritized = true;
  std::vector<float> reversed = {0.6f, 0.4f, 0.7f, 0.3f, 0.8f, 0.2f, 0.9f, 0.1f};
  const auto r2 = route_tokens(top1, {reversed.data(), nullptr, n, 1.f});
  std::vector<int> prio(r2.plan.slot_token.begin(),
                        r2.plan.slot_token.begin() + r2.plan.expert_offsets[1]);
  EXPECT_EQ(prio, (std::vector<int>{3, 2}));  // highest top-1 score first
  EXPECT_EQ(r2.stats.dropped_assignments, 2);
}

TEST(TokenChoice, Top2GatesAreRenormalized) {
  const int n = 6, e = 4;
  const auto probs = random_probs(n, e, 8);
  MoeConfig cfg = small_config(RouterKind::kTop2, 4, 4, e);
  const auto r = route_tokens(cfg, {probs.data(), nullptr, n, 100.f});
  for (int t = 0; t < n; ++t) {
    float sum = 0;
    for (int j = r.plan.token_offsets[t]; j < r.plan.token_offsets[t + 1]; ++j)
      sum += r.plan.slot_gate[r.plan.token_slots[j]];
    EXPECT_NEAR(sum, 1.f, 1e-6f);
  }
}

TEST(Hash, ExpertIsTokenIdModE) {
  const int n = 20, e = 3;
  std::vector<int32_t> ids(n);
  for (int t = 0; t < n; ++t) ids[t] = t * 5 + 1;
  MoeConfig cfg = small_config(RouterKind::kHash, 4, 4, e);
  const auto r = route_tokens(cfg, {nullptr, ids.data(), n, 1.f});
  for (int i = 0; i < e; ++i)
    for (int s = r.plan.expert_offsets[i]; s < r.plan.expert_offsets[i + 1]; ++s)
      EXPECT_EQ(ids[r.plan.slot_token[s]] % e, i);
  EXPECT_EQ(r.plan.slot_count(), n);
}

// b = 1 (an assignment problem) is left out: at lambda = 1e-3 the dual ascent needs far more
// than 100 sweeps there; the rounded plan still meets every constraint (next test).
TEST(CappedExpertChoice, SolverMeetsRowAndColumnConstraints) {
  for (int seed = 1; seed <= 8; ++seed) {
    const int n = 16 * seed + 3, e = 4 + seed % 5;
    for (int b : {2, 3}) {
      const auto probs = random_probs(n, e, seed * 10 + b, 2.f);
      const int k = capped_capacity(n, e, b, 2.f);
      CappedSolverConfig cfg;
      cfg.max_experts_per_token = b;
      const auto sol = solve_capped_plan(probs.data(), n, e, k, cfg);
      EXPECT_LT(sol.residual, 1e-2)
          << "n=" << n << " e=" << e << " b=" << b << " iterations=" << sol.iterations;
      for (int i = 0; i < e; ++i) {
        double row = 0;
        for (int t = 0; t < n; ++t) row += std::exp(double(sol.log_plan[i * n + t]));
        EXPECT_NEAR(row, k, 1e-2 * k);
      }
      for (int t = 0; t < n; ++t) {
        double col = 0;
        for (int i = 0; i < e; ++i) {
          const double a = std::exp(double(sol.log_plan[i * n + t]));
          EXPECT_LE(a, 1.0 + 1e-6);  // clipped at exactly 1 in log space
          col += a;
        }
        EXPECT_LE(col, b * (1 + 1e-2));
      }
    }
  }
}

TEST(CappedExpertChoice, PlanHasKPerExpertAndNeverExceedsCap) {
  int case_id = 500;
  for (const Shape& s : awkward_shapes())
    for (int b : {1, 2, 3}) {
      const int group = s.group == 0 ? s.n : std::min(s.group, s.n);
      bool feasible = true;
      for (const auto& g : routing_groups(s.n, s.group)) feasible &= g.size * b >= s.e;
      if (!feasible || group == 0) continue;
      MoeConfig cfg = small_config(RouterKind::kExpertChoiceCapped, 4, 4, s.e);
      cfg.group_size = s.group;
      cfg.capped.max_experts_per_token = b;
      const auto probs = random_probs(s.n, s.e, ++case_id, 3.f);
      const auto r = route_tokens(cfg, {probs.data(), nullptr, s.n, s.c});
      ASSERT_TRUE(plan_is_consistent(r.plan));
      EXPECT_LE(r.stats.max_experts_per_token, b);
      for (const auto& g : routing_groups(s.n, s.group)) {
        const int k = capped_capacity(g.size, s.e, b, s.c);
        for (int i = 0; i < s.e; ++i) {
          int in_group = 0;
          for (int slot = r.plan.expert_offsets[i]; slot < r.plan.expert_offsets[i + 1]; ++slot)
            in_group +=
                r.plan.slot_token[slot] >= g.begin && r.plan.slot_token[slot] < g.begin + g.size;
          EXPECT_EQ(in_group, k) << "n=" << s.n << " e=" << s.e << " b=" << b;
        }
      }
    }
}

TEST(CappedExpertChoice, CapBindsWhereExpertChoiceExceedsIt) {
  // Sharp scores: uncapped EC gives many tokens 3+ experts; the cap must remove every one.
  const int n = 256, e = 8;
  const auto probs = random_probs(n, e, 77, 4.f);
  MoeConfig ec = small_config(RouterKind::kExpertChoice, 4, 4, e);
  const auto plain = route_tokens(ec, {probs.data(), nullptr, n, 2.f});
  ASSERT_GT(plain.stats.max_experts_per_token, 2);
  MoeConfig capped = small_config(RouterKind::kExpertChoiceCapped, 4, 4, e);
  capped.capped.max_experts_per_token = 2;
  const auto r = route_tokens(capped, {probs.data(), nullptr, n, 2.f});
  EXPECT_LE(r.stats.max_experts_per_token, 2);
  EXPECT_LT(r.stats.solver_residual, 1e-2);
  // With b = 2 and c = 2 the program is tight: every token gets exactly two experts.
  EXPECT_EQ(r.stats.experts_per_token[2], n);
}

TEST(CappedExpertChoice, LooseCapReproducesExpertChoice) {
  // With b = e the cap never binds and the LP optimum is EC's top-k.
  const int n = 64, e = 4;
  const auto probs = random_probs(n, e, 11, 2.f);
  MoeConfig ec = small_config(RouterKind::kExpertChoice, 4, 4, e);
  MoeConfig capped = small_config(RouterKind::kExpertChoiceCapped, 4, 4, e);
  capped.capped.max_experts_per_token = e;
  const auto a = route_tokens(ec, {probs.data(), nullptr, n, 2.f});
  const auto b = route_tokens(capped, {probs.data(), nullptr, n, 2.f});
  EXPECT_EQ(a.plan.slot_token, b.plan.slot_token);
}

TEST(CappedExpertChoice, InfeasibleGroupIsAClearError) {
  const int n = 1, e = 8;
  const auto probs = random_probs(n, e, 1);
  MoeConfig cfg = small_config(RouterKind::kExpertChoiceCapped, 4, 4, e);
  EXPECT_THROW(route_tokens(cfg, {probs.data(), nullptr, n, 2.f}), Error);
}
