// The experts' fused elementwise work against slow, unfused references built from the public
// pieces: GELU runs on each finished tile of the first GEMM (forward) and GELU's backward, with
// Phi recomputed instead of stored, on each tile of d_out·W2^T (core/gemm.h TileEpilogue). The
// math per element is unchanged, so pre, hidden and the pre-activation gradient must equal the
// unfused references (whole-array GELU keeping Phi) bit for bit, in fp32 and bf16, at 1 and 2
// threads, with expert loads that are not multiples of the GEMM tiles.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "moe/expert_ffn.h"
#include "moe_test_util.h"
#include "nn/gelu.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

template <typename T, typename A1, typename A2>
bool same_bits(const std::vector<T, A1>& a, const std::vector<T, A2>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// One GEMM per expert, as a plain loop of gemm() calls on fp32 or rounded operands (kBf16 rounds
// them inside the GEMM exactly as the layer's bf16 copies are rounded).
void per_expert_gemm(const RoutingPlan& plan, bool trans_b, int n, int k, const float* a,
                     const float* w, int64_t w_stride, float* c, Precision precision) {
  for (int i = 0; i < plan.n_experts; ++i) {
    const int rows = plan.expert_load(i), s0 = plan.expert_offsets[i];
    if (rows == 0) continue;
    gemm(in_precision(make_gemm(false, trans_b, rows, n, k, a + int64_t(s0) * k, w + i * w_stride,
                                c + int64_t(s0) * n),
                      precision));
  }
}

struct Reference {
  std::vector<float> pre, cdf, hidden, d_pre;
  Bf16Vec hidden16, d_pre16;
};

// Unfused: gather, GEMM, GELU over the whole [S, f] array; combine adjoint, GEMM, GELU'.
Reference reference(const LayerCase& c, const RoutingPlan& plan, const std::vector<float>& dy,
                    Precision precision) {
  const int S = plan.slot_count(), d = c.config.d_model, f = c.config.d_ff;
  const MoeWeights w = c.weights();
  std::vector<float> x_in(size_t(S) * d), d_out(size_t(S) * d);
  for (int s = 0; s < S; ++s)
    for (int j = 0; j < d; ++j) {
      x_in[size_t(s) * d + j] = c.x[size_t(plan.slot_token[s]) * d + j];
      d_out[size_t(s) * d + j] = plan.slot_gate[s] * dy[size_t(plan.slot_token[s]) * d + j];
    }
  Reference r;
  r.pre.resize(size_t(S) * f);
  r.cdf.resize(r.pre.size());
  per_expert_gemm(plan, false, f, d, x_in.data(), w.w1, int64_t(d) * f, r.pre.data(), precision);
  std::vector<float> d_hidden(r.pre.size());
  per_expert_gemm(plan, true, f, d, d_out.data(), w.w2, int64_t(f) * d, d_hidden.data(), precision);
  if (precision == Precision::kBf16) {
    r.hidden16.resize(r.pre.size());
    r.d_pre16.resize(r.pre.size());
    nn::gelu_forward(r.hidden16.data(), r.cdf.data(), r.pre.data(), int64_t(r.pre.size()));
    nn::gelu_backward(r.d_pre16.data(), d_hidden.data(), r.pre.data(), r.cdf.data(),
                      int64_t(r.pre.size()));
  } else {
    r.hidden.resize(r.pre.size());
    r.d_pre.resize(r.pre.size());
    nn::gelu_forward(r.hidden.data(), r.cdf.data(), r.pre.data(), int64_t(r.pre.size()));
    nn::gelu_backward(r.d_pre.data(), d_hidden.data(), r.pre.data(), r.cdf.data(),
                      int64_t(r.pre.size()));
  }
  return r;
}

}  // namespace

TEST(ExpertFfnFused, GeluInTheGemmTilesEqualsTheUnfusedReference) {
  // d_ff 700: two tiles per row of pre (512 + 188); 600 tokens over 5 experts: loads that are not
  // multiples of the 128-row tiles.
  const MoeConfig cfg = small_config(RouterKind::kExpertChoice, 48, 700, 5);
  const LayerCase c(cfg, 600, 3, 1.f);
  MoeLayer layer(cfg);
  std::vector<float> y(c.x.size());
  layer.forward(c.weights(), c.input(), y.data());
  const RoutingPlan plan = layer.plan();
  const auto dy = random_normal(c.x.size(), 4);
  const MoeWeights w = c.weights();
  const int S = plan.slot_count(), d = cfg.d_model, f = cfg.d_ff;
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    const Reference r = reference(c, plan, dy, precision);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      ExpertActivations act;
      ExpertScratch scratch;
      experts_forward(y.data(), act, plan, c.x.data(), w.w1, w.w2, d, f, precision);
      const bool bf16 = precision == Precision::kBf16;
      EXPECT_TRUE(same_bits(act.pre, r.pre)) << "pre, threads " << threads << " bf16 " << bf16;
      if (bf16)
        EXPECT_TRUE(same_bits(act.hidden16, r.hidden16)) << "hidden16, threads " << threads;
      else
        EXPECT_TRUE(same_bits(act.hidden, r.hidden)) << "hidden, threads " << threads;

      FlatBuffer grads(c.table);
      std::vector<float> dx(c.x.size(), 0.f), dgate(static_cast<size_t>(S));
      experts_backward(dx.data(), grads.get("experts.w1"), grads.get("experts.w2"), dgate.data(),
                       scratch, dy.data(), act, plan, w.w1, w.w2, d, f, precision);
      if (bf16)
        EXPECT_TRUE(same_bits(scratch.grad_f16, r.d_pre16)) << "d_pre16, threads " << threads;
      else
        EXPECT_TRUE(same_bits(scratch.grad_f, r.d_pre)) << "d_pre, threads " << threads;
    }
  }
  omp_set_num_threads(2);
}
