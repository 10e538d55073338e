// Shared helpers for the MoE tests: a layer with random parameters and inputs.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor_table.h"
#include "moe/moe_layer.h"

namespace ecmoe::testing {

inline std::vector<float> random_normal(size_t n, uint64_t seed, float std = 1.f) {
  Rng rng(seed, 99);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std * rng.normal(i);
  return v;
}

// A layer's parameters in a tensor table, plus an input batch.
struct LayerCase {
  MoeConfig config;
  int n;
  TensorTable table;
  FlatBuffer params;
  std::vector<float> x;
  std::vector<int32_t> token_ids;

  LayerCase(const MoeConfig& cfg, int n_tokens, uint64_t seed, float router_std = 1.f)
      : config(cfg), n(n_tokens) {
    declare_moe_params(table, "", config);
    params = FlatBuffer(table);
    init_moe_params(params, "", config, seed, router_std);
    x = random_normal(size_t(n) * config.d_model, seed + 1);
    token_ids.resize(n);
    for (int t = 0; t < n; ++t) token_ids[t] = int32_t((t * 7919 + seed) % 1000);
  }
  LayerCase(const LayerCase&) = delete;
  MoeWeights weights() const { return moe_weights(params, "", config); }
  MoeInput input(bool training = true) const {
    return MoeInput{x.data(), token_ids.data(), n, training, 0};
  }
};

// What a finite-difference check perturbs: the layer input x and every parameter of the case,
// each with the analytic gradient backward gave it (dx for x, grads for the parameters).
struct GradTarget {
  std::string name;
  float* values;
  const float* analytic;
  size_t size;
};

inline std::vector<GradTarget> gradient_targets(LayerCase& c, const std::vector<float>& dx,
                                                const FlatBuffer& grads) {
  std::vector<GradTarget> targets = {{"x", c.x.data(), dx.data(), c.x.size()}};
  for (const auto& spec : c.table.specs())
    targets.push_back(
        {spec.name, c.params.get(spec.name), grads.get(spec.name), size_t(spec.numel())});
  return targets;
}

inline MoeConfig small_config(RouterKind router, int d = 8, int f = 12, int e = 4) {
  MoeConfig c = default_moe_config(router);
  c.d_model = d;
  c.d_ff = f;
  c.n_experts = e;
  return c;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

}  // namespace ecmoe::testing
