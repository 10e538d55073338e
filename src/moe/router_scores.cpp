#include "moe/router_scores.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/gemm.h"

namespace ecmoe {

std::vector<GroupRange> routing_groups(int n_tokens, int group_size) {
  std::vector<GroupRange> groups;
  const int g = group_size <= 0 ? n_tokens : group_size;
  for (int b = 0; b < n_tokens; b += g) groups.push_back({b, std::min(g, n_tokens - b)});
  return groups;
}

void router_logits_forward(float* logits, const float* x, const float* w, int n, int d, int e) {
  // Each logit is a sequential sum over d (vectorised across experts, never across d), so its
  // rounding does not depend on threads, alignment or vector width.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* out = logits + int64_t(t) * e;
    const float* xt = x + int64_t(t) * d;
    for (int i = 0; i < e; ++i) out[i] = 0.f;
    for (int j = 0; j < d; ++j) {
      const float xv = xt[j];
      const float* wr = w + int64_t(j) * e;
      for (int i = 0; i < e; ++i) out[i] += xv * wr[i];
    }
  }
}

void router_logits_backward(float* dx, float* dw, const float* dlogits, const float* x,
                            const float* w, int n, int d, int e) {
  gemm(make_gemm(false, true, n, d, e, dlogits, w, dx, 1.f));
  gemm(make_gemm(true, false, d, e, n, x, dlogits, dw, 1.f));
}

void softmax_rows_forward(float* probs, const float* logits, int n, int e) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    const float* z = logits + int64_t(t) * e;
    float* p = probs + int64_t(t) * e;
    float m = z[0];
    for (int i = 1; i < e; ++i) m = std::max(m, z[i]);
    float sum = 0.f;
    for (int i = 0; i < e; ++i) sum += (p[i] = std::exp(z[i] - m));
    const float inv = 1.f / sum;
    for (int i = 0; i < e; ++i) p[i] *= inv;
  }
}

void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    const float* p = probs + int64_t(t) * e;
    const float* dp = dprobs + int64_t(t) * e;
    float dot = 0.f;
    for (int i = 0; i < e; ++i) dot += p[i] * dp[i];
    float* dz = dlogits + int64_t(t) * e;
    for (int i = 0; i < e; ++i) dz[i] += p[i] * (dp[i] - dot);
  }
}

double router_entropy_sum(const float* probs, int n, int e) {
  double total = 0;
  for (int64_t j = 0; j < int64_t(n) * e; ++j)
    if (probs[j] > 0.f) total -= double(probs[j]) * std::log(double(probs[j]));
  return total;
}

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

void gate_backward(float* dprobs, const RoutingPlan& plan, const float* probs, const float* dgate) {
  const int e = plan.n_experts;
  if (plan.gate_kind == GateKind::kConstant) return;
  if (plan.gate_kind == GateKind::kScore) {
    // A token may sit in several slots, but never twice with the same expert.
    for (int i = 0; i < e; ++i)
      for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s)
        dprobs[int64_t(plan.slot_token[s]) * e + i] += dgate[s];
    return;
  }
  // gate_j = p_j / Z over the token's chosen experts C:
  // dp_m = dgate_m / Z - (sum_j dgate_j p_j) / Z^2 for m in C (dgate_m = 0 if m was dropped).
  const int k = plan.choices_per_token;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < plan.n_tokens; ++t) {
    const int* chosen = plan.token_choices.data() + int64_t(t) * k;
    const float* p = probs + int64_t(t) * e;
    float z = 0.f;
    for (int c = 0; c < k; ++c) z += p[chosen[c]];
    float weighted = 0.f;
    std::vector<float> dg(k, 0.f);
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const int s = plan.token_slots[j];
      const int expert =
          int(std::upper_bound(plan.expert_offsets.begin(), plan.expert_offsets.end(), s) -
              plan.expert_offsets.begin()) -
          1;
      for (int c = 0; c < k; ++c)
        if (chosen[c] == expert) dg[c] = dgate[s];
    }
    for (int c = 0; c < k; ++c) weighted += dg[c] * p[chosen[c]];
    for (int c = 0; c < k; ++c)
      dprobs[int64_t(t) * e + chosen[c]] += dg[c] / z - weighted / (z * z);
  }
}

}  // namespace ecmoe
