#include "support/moe/reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>

namespace ecmoe::reference {

std::vector<std::vector<int>> expert_choice(const float* probs, int n, int e, int k) {
  std::vector<std::vector<int>> chosen(e);
  for (int i = 0; i < e; ++i) {
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return probs[a * e + i] > probs[b * e + i]; });
    chosen[i].assign(order.begin(), order.begin() + k);
    std::sort(chosen[i].begin(), chosen[i].end());
  }
  return chosen;
}

std::vector<double> expert_ffn(const float* x, const float* w1, const float* w2, int d, int f) {
  std::vector<double> hidden(f, 0.0), out(d, 0.0);
  for (int j = 0; j < f; ++j) {
    double a = 0;
    for (int c = 0; c < d; ++c) a += double(x[c]) * w1[c * f + j];
    hidden[j] = 0.5 * a * (1.0 + std::erf(a / std::sqrt(2.0)));
  }
  for (int c = 0; c < d; ++c)
    for (int j = 0; j < f; ++j) out[c] += hidden[j] * w2[j * d + c];
  return out;
}

std::vector<double> moe_forward(const RoutingPlan& plan, const float* x, const float* w1,
                                const float* w2, int d, int f) {
  std::vector<double> y(size_t(plan.n_tokens) * d, 0.0);
  for (int i = 0; i < plan.n_experts; ++i)
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s) {
      const int t = plan.slot_token[s];
      const auto out =
          expert_ffn(x + size_t(t) * d, w1 + size_t(i) * d * f, w2 + size_t(i) * f * d, d, f);
      for (int c = 0; c < d; ++c) y[size_t(t) * d + c] += plan.slot_gate[s] * out[c];
    }
  return y;
}

std::vector<double> dense_mixture(const float* probs, const float* x, const float* w1,
                                  const float* w2, int n, int e, int d, int f) {
  std::vector<double> y(size_t(n) * d, 0.0);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < e; ++i) {
      const auto out =
          expert_ffn(x + size_t(t) * d, w1 + size_t(i) * d * f, w2 + size_t(i) * f * d, d, f);
      for (int c = 0; c < d; ++c) y[size_t(t) * d + c] += double(probs[t * e + i]) * out[c];
    }
  return y;
}

}  // namespace ecmoe::reference
