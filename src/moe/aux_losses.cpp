#include "moe/aux_losses.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "moe/routing_groups.h"

namespace ecmoe {

namespace {
int argmax_row(const float* p, int e) {  // ties: lower expert index
  int best = 0;
  for (int i = 1; i < e; ++i)
    if (p[i] > p[best]) best = i;
  return best;
}

float logsumexp_row(const float* z, int e) {
  float m = z[0];
  for (int i = 1; i < e; ++i) m = std::max(m, z[i]);
  float s = 0.f;
  for (int i = 0; i < e; ++i) s += std::exp(z[i] - m);
  return m + std::log(s);
}

// f_i: fraction of the group's tokens whose top-1 expert is i.
std::vector<double> top1_fractions(const float* probs, GroupRange g, int e) {
  std::vector<double> f(e, 0.0);
  for (int t = g.begin; t < g.begin + g.size; ++t) f[argmax_row(probs + int64_t(t) * e, e)] += 1;
  for (auto& v : f) v /= g.size;
  return f;
}
}  // namespace

AuxLosses aux_losses_forward(const float* logits, const float* probs, int n, int e, int group_size,
                             AuxLossWeights weights) {
  AuxLosses out;
  if (n == 0) return out;
  const auto groups = routing_groups(n, group_size);
  double lb = 0;
  for (const auto& g : groups) {
    const auto f = top1_fractions(probs, g, e);
    std::vector<double> p_mean(e, 0.0);
    for (int t = g.begin; t < g.begin + g.size; ++t)
      for (int i = 0; i < e; ++i) p_mean[i] += probs[int64_t(t) * e + i];
    double s = 0;
    for (int i = 0; i < e; ++i) s += f[i] * p_mean[i] / g.size;
    lb += e * s;
  }
  out.load_balance = float(lb / groups.size());
  double z = 0;
  for (int t = 0; t < n; ++t) {
    const double l = logsumexp_row(logits + int64_t(t) * e, e);
    z += l * l;
  }
  out.z_loss = float(z / n);
  out.weighted_total = weights.load_balance * out.load_balance + weights.z_loss * out.z_loss;
  return out;
}

void aux_losses_backward(float* dlogits, float* dprobs, const float* logits, const float* probs,
                         int n, int e, int group_size, AuxLossWeights weights) {
  if (n == 0) return;
  if (weights.load_balance != 0.f) {
    // d/dP[t,i] of w · mean_g e · sum_i f_i · mean_t P[t,i]; f is a count, with no gradient.
    const auto groups = routing_groups(n, group_size);
    for (const auto& g : groups) {
      const auto f = top1_fractions(probs, g, e);
      const double scale = double(weights.load_balance) * e / (double(groups.size()) * g.size);
      for (int t = g.begin; t < g.begin + g.size; ++t)
        for (int i = 0; i < e; ++i) dprobs[int64_t(t) * e + i] += float(scale * f[i]);
    }
  }
  if (weights.z_loss != 0.f) {
    for (int t = 0; t < n; ++t) {
      const float l = logsumexp_row(logits + int64_t(t) * e, e);
      const float scale = weights.z_loss * 2.f * l / n;
      for (int i = 0; i < e; ++i) dlogits[int64_t(t) * e + i] += scale * probs[int64_t(t) * e + i];
    }
  }
}

}  // namespace ecmoe
