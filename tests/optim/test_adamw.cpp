// AdamW against a plain double-precision reference, against torch.optim.AdamW's numbers, and
// bitwise across thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "optim/adamw.h"

using namespace ecmoe;

namespace {

void fill_normal(FlatBuffer& buf, uint64_t seed, float scale) {
  const Rng rng(seed, 3);
  for (const TensorSpec& spec : buf.table().specs()) {
    float* x = buf.get(spec.name);
    for (int64_t i = 0; i < spec.numel(); ++i) x[i] = scale * rng.normal(uint64_t(spec.offset + i));
  }
}

// The textbook update, in double, one element at a time.
struct ReferenceAdamW {
  double beta1, beta2, eps, wd;
  std::vector<double> m, v;
  int64_t t = 0;
  void step(std::vector<double>& p, const std::vector<double>& g, double lr,
            const std::vector<bool>& decay) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      if (decay[i]) p[i] -= lr * wd * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(beta1, double(t)));
      const double v_hat = v[i] / (1 - std::pow(beta2, double(t)));
      // sqrt(v_hat) + eps is torch's sqrt(v)/sqrt(1 − β2ᵗ) + eps, written as in the paper.
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

}  // namespace

TEST(AdamW, MatchesDoublePrecisionReference) {
  TensorTable table;
  table.add("embed", {7, 5});  // decayed (2-D)
  table.add("ln.gain", {5});   // not decayed
  table.add("experts", {3, 5, 9});
  FlatBuffer params(table), grads(table);
  fill_normal(params, 1, 0.5f);
  AdamWConfig config;
  config.weight_decay = 0.1;
  AdamW opt(table, config);

  std::vector<double> p, g;
  std::vector<bool> decay;
  for (const TensorSpec& spec : table.specs())
    for (int64_t i = 0; i < spec.numel(); ++i) {
      p.push_back(params.get(spec.name)[i]);
      decay.push_back(spec.shape.size() >= 2);
    }
  ReferenceAdamW ref{
      0.9, 0.999, 1e-8, 0.1, std::vector<double>(p.size()), std::vector<double>(p.size())};

  const float lrs[] = {1e-2f, 3e-3f, 1e-3f, 1e-3f, 5e-4f};
  for (int s = 0; s < 5; ++s) {
    fill_normal(grads, 100 + s, s == 2 ? 1e-4f : 1.f);  // a small-gradient step too
    g.clear();
    for (const TensorSpec& spec : table.specs())
      for (int64_t i = 0; i < spec.numel(); ++i) g.push_back(grads.get(spec.name)[i]);
    opt.step(params, grads, lrs[s]);
    ref.step(p, g, lrs[s], decay);
  }
  EXPECT_EQ(opt.step_count(), 5);
  size_t k = 0;
  for (const TensorSpec& spec : table.specs())
    for (int64_t i = 0; i < spec.numel(); ++i, ++k) {
      // float32 state vs double: each step moves p by ~lr, computed to ~1e-7 relative.
      EXPECT_NEAR(params.get(spec.name)[i], p[k], 1e-6) << spec.name << "[" << i << "]";
      EXPECT_NEAR(opt.m().get(spec.name)[i], ref.m[k], 1e-6 * (1 + std::abs(ref.m[k])));
      EXPECT_NEAR(opt.v().get(spec.name)[i], ref.v[k], 1e-6 * (1 + std::abs(ref.v[k])));
    }
}

// Expected values produced once by PyTorch 1.13 (Debian python3-torch) with:
//
//   import torch
//   W = torch.tensor([[0.1, -0.2, 0.3], [0.4, -0.5, 0.6]], requires_grad=True)
//   b = torch.tensor([0.01, -0.02, 0.03], requires_grad=True)
//   opt = torch.optim.AdamW([{"params": [W], "weight_decay": 0.1},
//                            {"params": [b], "weight_decay": 0.0}],
//                           lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
//   grads = [([[0.5, -1.0, 0.0], [2.0, 1e-3, -0.25]], [0.1, -0.3, 0.0]),
//            ([[-0.4, 0.8, 0.0], [1.5, 2e-3, 0.125]], [0.2, 0.05, 0.0]),
//            ([[0.3, 0.6, 0.0], [-3.0, -1e-3, 0.5]], [-0.1, 0.4, 0.0])]
//   for lr, (gW, gb) in zip([1e-2, 5e-3, 2e-3], grads):
//       for group in opt.param_groups:
//           group["lr"] = lr
//       W.grad = torch.tensor(gW)
//       b.grad = torch.tensor(gb)
//       opt.step()
//   for name, t in [("W", W), ("b", b), ("W.m", opt.state[W]["exp_avg"]),
//                   ("W.v", opt.state[W]["exp_avg_sq"])]:
//       print(name, ", ".join("%.9gf" % x for x in t.detach().flatten().tolist()))
TEST(AdamW, MatchesTorch) {
  TensorTable table;
  table.add("W", {2, 3});
  table.add("b", {3});
  FlatBuffer params(table), grads(table);
  const float W0[] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f};
  const float b0[] = {0.01f, -0.02f, 0.03f};
  std::memcpy(params.get("W"), W0, sizeof(W0));
  std::memcpy(params.get("b"), b0, sizeof(b0));
  const float gW[3][6] = {{0.5f, -1.0f, 0.0f, 2.0f, 1e-3f, -0.25f},
                          {-0.4f, 0.8f, 0.0f, 1.5f, 2e-3f, 0.125f},
                          {0.3f, 0.6f, 0.0f, -3.0f, -1e-3f, 0.5f}};
  const float gb[3][3] = {{0.1f, -0.3f, 0.0f}, {0.2f, 0.05f, 0.0f}, {-0.1f, 0.4f, 0.0f}};
  const float lrs[3] = {1e-2f, 5e-3f, 2e-3f};

  AdamWConfig config;
  config.weight_decay = 0.1;  // the default rule decays W (2-D), not b (1-D)
  AdamW opt(table, config);
  for (int s = 0; s < 3; ++s) {
    std::memcpy(grads.get("W"), gW[s], sizeof(gW[s]));
    std::memcpy(grads.get("b"), gb[s], sizeof(gb[s]));
    opt.step(params, grads, lrs[s]);
  }

  const float W_torch[] = {0.0889227465f, -0.18983762f,  0.299490273f,
                           0.384425223f,  -0.514808416f, 0.609390259f};
  const float b_torch[] = {-0.00566608785f, -0.00782109797f, 0.0299999993f};
  const float m_torch[] = {0.0344999991f,   0.0510000065f,   0.f,
                           -0.00300001353f, 0.000161000004f, 0.0410000011f};
  const float v_torch[] = {0.00049934024f, 0.00199736096f,  0.f,
                           0.0152397547f,  5.99400174e-09f, 0.000327984453f};
  // Same formulas, same float32 rounding of the step constants; what remains are last-bit
  // differences (we may contract a·b + c into an FMA, torch's kernels may not). m[3] cancels
  // (0.297 − 0.3), so its tolerance is absolute, at the scale of the terms.
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(params.get("W")[i], W_torch[i], 1e-7) << "W[" << i << "]";
    EXPECT_NEAR(opt.m().get("W")[i], m_torch[i], 1e-8) << "m[" << i << "]";
    EXPECT_NEAR(opt.v().get("W")[i], v_torch[i], 1e-6 * v_torch[i] + 1e-12) << "v[" << i << "]";
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(params.get("b")[i], b_torch[i], 1e-7) << "b[" << i << "]";
}

TEST(AdamW, BitwiseIdenticalForAnyThreadCount) {
  TensorTable table;
  table.add("embed", {1000, 77});  // several chunks, the last one partial
  table.add("bias", {77});
  table.add("experts", {4, 130, 129});
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    FlatBuffer params(table), grads(table);
    fill_normal(params, 5, 0.2f);
    AdamW opt(table);
    for (int s = 0; s < 3; ++s) {
      fill_normal(grads, 50 + s, 1.f);
      opt.step(params, grads, 1e-3f);
    }
    std::vector<float> out(params.data(), params.data() + params.size());
    out.insert(out.end(), opt.m().data(), opt.m().data() + params.size());
    out.insert(out.end(), opt.v().data(), opt.v().data() + params.size());
    return out;
  };
  const int saved = omp_get_max_threads();
  const auto one = run(1), two = run(2), three = run(3);
  omp_set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
}

TEST(AdamW, DecayRuleAndPadding) {
  TensorTable table;
  table.add("w", {3, 3});
  table.add("gain", {3});  // 3 floats, padded to 16 in the buffer
  FlatBuffer params(table), grads(table);
  for (const char* name : {"w", "gain"})
    for (float& x : params.view(name)) x = 1.f;
  AdamWConfig config;
  config.weight_decay = 0.5;
  AdamW opt(table, config);
  opt.step(params, grads, 0.1f);  // zero gradients: only weight decay moves anything
  EXPECT_FLOAT_EQ(params.get("w")[0], 0.95f);
  EXPECT_EQ(params.get("gain")[0], 1.f);
  for (int64_t i = table.spec("gain").offset + 3; i < params.size(); ++i) {
    EXPECT_EQ(params.data()[i], 0.f);
    EXPECT_EQ(opt.v().data()[i], 0.f);
  }

  // A custom rule: decay everything.
  AdamWConfig all = config;
  all.decays = [](const TensorSpec&) { return true; };
  AdamW opt2(table, all);
  opt2.step(params, grads, 0.1f);
  EXPECT_FLOAT_EQ(params.get("gain")[0], 0.95f);
}

TEST(AdamW, RejectsBadConfigAndBuffers) {
  TensorTable table, other;
  table.add("w", {2, 2});
  other.add("w", {4, 4});
  AdamWConfig bad;
  bad.beta2 = 1.0;
  EXPECT_THROW(AdamW(table, bad), Error);
  bad = {};
  bad.eps = 0.0;
  EXPECT_THROW(AdamW(table, bad), Error);
  AdamW opt(table);
  FlatBuffer p(table), g(other);
  EXPECT_THROW(opt.step(p, g, 1e-3f), Error);
  EXPECT_THROW(opt.step(p, p, -1.f), Error);
  EXPECT_THROW(opt.set_step_count(-1), Error);
  opt.set_step_count(41);
  FlatBuffer g2(table);
  opt.step(p, g2, 1e-3f);
  EXPECT_EQ(opt.step_count(), 42);
}
