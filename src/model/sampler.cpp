// logits [V] -> one id; candidates sorted by probability (ties: lower id first).
#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace ecmoe {

void SamplingConfig::validate() const {
  ECMOE_CHECK(std::isfinite(temperature) && temperature >= 0.f,
              "sampling: temperature must be >= 0, got ", temperature);
  ECMOE_CHECK(top_k >= 0, "sampling: top-k must be >= 0 (0 = off), got ", top_k);
  ECMOE_CHECK(top_p > 0.f && top_p <= 1.f, "sampling: top-p must be in (0, 1], got ", top_p);
}

int sample_token(std::span<const float> logits, const SamplingConfig& config, float u) {
  const int V = int(logits.size());
  ECMOE_CHECK(V > 0, "sampling: no logits");
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (config.temperature == 0.f) return *std::min_element(order.begin(), order.end(), better);
  std::sort(order.begin(), order.end(), better);
  const int keep = config.top_k > 0 ? std::min(config.top_k, V) : V;
  order.resize(keep);
  // Softmax of logits / T over the kept ids, in double.
  std::vector<double> p(keep);
  const double top = logits[order[0]];
  double sum = 0;
  for (int i = 0; i < keep; ++i)
    sum += p[i] = std::exp((double(logits[order[i]]) - top) / config.temperature);
  int n = keep;
  if (config.top_p < 1.f) {
    double cum = 0;
    for (n = 0; n < keep;) {
      cum += p[n++] / sum;
      if (cum >= config.top_p) break;
    }
    sum = std::accumulate(p.begin(), p.begin() + n, 0.0);
  }
  double target = double(u) * sum;
  for (int i = 0; i < n; ++i) {
    target -= p[i];
    if (target < 0) return order[i];
  }
  return order[n - 1];
}

}  // namespace ecmoe
