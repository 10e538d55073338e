// Dispatch and combine (moe/dispatch_combine.h) against dense references: dispatch is the
// [S, n] 0/1 matrix P with P[s, slot_token[s]] = 1, combine the [n, S] matrix G = P^T diag(gate).
// Their adjoints must be the transposes (P^T and diag(gate) P, with dgate the derivative by each
// gate), the bf16 forms the fp32 results rounded once, and every result the same at 1 and 2
// threads. Plans: expert choice over groups, top-2 with capacity drops (tokens without a slot),
// dense, and a hand-made plan with repeated experts per token and an empty expert.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "moe/dispatch_combine.h"
#include "moe/routers.h"
#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

std::vector<RoutingPlan> plans(int n, int e) {
  std::vector<RoutingPlan> out;
  const std::vector<float> logits = random_normal(size_t(n) * e, 7);
  std::vector<float> probs(logits.size());
  for (int t = 0; t < n; ++t) {
    float sum = 0.f;
    for (int i = 0; i < e; ++i) sum += probs[t * e + i] = std::exp(logits[t * e + i]);
    for (int i = 0; i < e; ++i) probs[t * e + i] /= sum;
  }
  for (RouterKind kind : {RouterKind::kExpertChoice, RouterKind::kTop2, RouterKind::kDense}) {
    MoeConfig config;
    config.router = kind;
    config.n_experts = e;
    config.group_size = kind == RouterKind::kExpertChoice ? 8 : 0;
    RouteRequest request;
    request.probs = probs.data();
    request.n_tokens = n;
    request.capacity_factor = kind == RouterKind::kTop2 ? 0.5f : 2.f;  // top-2 drops some
    out.push_back(route_tokens(config, request).plan);
  }
  // Token 0 twice at expert 0 and once at 2; expert 1 empty; token 3 in none.
  const std::vector<Assignment> hand = {{0, 0, 0.5f},  {2, 1, -1.25f}, {0, 2, 2.f},
                                        {2, 0, 0.75f}, {0, 0, 0.125f}, {3, 4, 1.f}};
  out.push_back(make_routing_plan(5, 4, GateKind::kScore, hand));
  return out;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

struct Results {
  std::vector<float> x_slots, dx, y, d_out, dgate;
  std::vector<uint16_t> x_slots16, d_out16;
  std::vector<float> dgate16;
};

Results run_all(const RoutingPlan& plan, int d, const std::vector<float>& x,
                const std::vector<float>& d_slots, const std::vector<float>& out,
                const std::vector<float>& dy) {
  const int n = plan.n_tokens, S = plan.slot_count();
  Results r;
  r.x_slots.resize(size_t(S) * d);
  r.x_slots16.resize(size_t(S) * d);
  r.dx.assign(size_t(n) * d, 0.5f);  // += onto a non-zero start
  r.y.assign(size_t(n) * d, 99.f);   // overwritten
  r.d_out.resize(size_t(S) * d);
  r.d_out16.resize(size_t(S) * d);
  r.dgate.resize(S);
  r.dgate16.resize(S);
  dispatch_forward(r.x_slots.data(), x.data(), plan, d);
  dispatch_forward(r.x_slots16.data(), x.data(), plan, d);
  dispatch_backward(r.dx.data(), d_slots.data(), plan, d);
  combine_forward(r.y.data(), out.data(), plan, d);
  combine_backward(r.d_out.data(), r.dgate.data(), dy.data(), out.data(), plan, d);
  combine_backward(r.d_out16.data(), r.dgate16.data(), dy.data(), out.data(), plan, d);
  return r;
}

TEST(DispatchCombine, DenseReferencesAdjointsBf16AndThreads) {
  const int n = 24, e = 4, d = 19;
  for (const RoutingPlan& plan : plans(n, e)) {
    ASSERT_TRUE(plan_is_consistent(plan));
    const int np = plan.n_tokens, S = plan.slot_count();
    const std::vector<float> x = random_normal(size_t(np) * d, 1),
                             d_slots = random_normal(size_t(S) * d, 2),
                             out = random_normal(size_t(S) * d, 3),
                             dy = random_normal(size_t(np) * d, 4);
    omp_set_num_threads(2);
    const Results r = run_all(plan, d, x, d_slots, out, dy);
    omp_set_num_threads(1);
    const Results r1 = run_all(plan, d, x, d_slots, out, dy);
    EXPECT_TRUE(same_bits(r.x_slots, r1.x_slots) && same_bits(r.dx, r1.dx) &&
                same_bits(r.y, r1.y) && same_bits(r.d_out, r1.d_out) &&
                same_bits(r.dgate, r1.dgate) && same_bits(r.x_slots16, r1.x_slots16) &&
                same_bits(r.d_out16, r1.d_out16));

    // Dense references, in double.
    std::vector<double> ref_dx(size_t(np) * d, 0.5), ref_y(size_t(np) * d, 0.0);
    for (int s = 0; s < S; ++s) {
      const int t = plan.slot_token[s];
      const float g = plan.slot_gate[s];
      double dg = 0;
      for (int c = 0; c < d; ++c) {
        EXPECT_EQ(r.x_slots[size_t(s) * d + c], x[size_t(t) * d + c]);
        EXPECT_EQ(r.x_slots16[size_t(s) * d + c], float_to_bf16(x[size_t(t) * d + c]));
        EXPECT_EQ(r.d_out[size_t(s) * d + c], g * dy[size_t(t) * d + c]);
        EXPECT_EQ(r.d_out16[size_t(s) * d + c], float_to_bf16(g * dy[size_t(t) * d + c]));
        ref_dx[size_t(t) * d + c] += d_slots[size_t(s) * d + c];
        ref_y[size_t(t) * d + c] += double(g) * out[size_t(s) * d + c];
        dg += double(dy[size_t(t) * d + c]) * out[size_t(s) * d + c];
      }
      EXPECT_NEAR(r.dgate[s], dg, 1e-5 * (1 + std::abs(dg)));
      EXPECT_EQ(r.dgate16[s], r.dgate[s]);
    }
    for (size_t j = 0; j < ref_dx.size(); ++j) {
      EXPECT_NEAR(r.dx[j], ref_dx[j], 1e-5 * (1 + std::abs(ref_dx[j])));
      EXPECT_NEAR(r.y[j], ref_y[j], 1e-5 * (1 + std::abs(ref_y[j])));
    }

    // Adjoint identities: <P x, g> = <x, P^T g> and <G out, dy> = <out, G^T dy>.
    std::vector<float> dx0(size_t(np) * d, 0.f);
    dispatch_backward(dx0.data(), d_slots.data(), plan, d);
    EXPECT_NEAR(dot(r.x_slots, d_slots), dot(x, dx0), 1e-4 * (1 + std::abs(dot(x, dx0))));
    EXPECT_NEAR(dot(r.y, dy), dot(out, r.d_out), 1e-4 * (1 + std::abs(dot(out, r.d_out))));
  }
}

// Combine with a residual: the bits of combining, then adding the residual (at 1 and 2 threads);
// a token without a slot gets the residual itself.
TEST(DispatchCombine, ResidualIsAddedAfterTheSum) {
  const int n = 24, e = 4, d = 19;
  for (const RoutingPlan& plan : plans(n, e)) {
    const int np = plan.n_tokens, S = plan.slot_count();
    const std::vector<float> out = random_normal(size_t(S) * d, 3),
                             residual = random_normal(size_t(np) * d, 5);
    std::vector<float> want(size_t(np) * d);
    combine_forward(want.data(), out.data(), plan, d);
    for (size_t j = 0; j < want.size(); ++j) want[j] += residual[j];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> y(size_t(np) * d, 99.f);
      combine_forward(y.data(), out.data(), plan, d, residual.data());
      EXPECT_TRUE(same_bits(y, want)) << threads << " threads";
    }
  }
  const std::vector<Assignment> slot = {{1, 1, 3.f}};
  const RoutingPlan one = make_routing_plan(2, 2, GateKind::kScore, slot);
  const std::vector<float> out = {1.f, 2.f}, residual = {0.5f, -1.f, 0.25f, 4.f};
  std::vector<float> y(4, 7.f);
  combine_forward(y.data(), out.data(), one, 2, residual.data());
  EXPECT_EQ(y, (std::vector<float>{0.5f, -1.f, 3.25f, 10.f}));
}

TEST(DispatchCombine, TokensWithoutSlotsCombineToZero) {
  const std::vector<Assignment> one = {{1, 2, 3.f}};
  const RoutingPlan plan = make_routing_plan(4, 2, GateKind::kScore, one);
  const int d = 3;
  const std::vector<float> out = {1.f, 2.f, 4.f};
  std::vector<float> y(size_t(4) * d, 7.f);
  combine_forward(y.data(), out.data(), plan, d);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0, 0, 0, 3, 6, 12, 0, 0, 0}));
}

}  // namespace
