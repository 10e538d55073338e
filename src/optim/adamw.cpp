// AdamW: one elementwise loop over fixed chunks of the flat buffers.
#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "core/error.h"

namespace ecmoe {

namespace {
// 128 KiB of each buffer per chunk: big enough to amortise scheduling, small enough that a
// table of a few large tensors still spreads over all threads.
constexpr int64_t kChunkFloats = 1 << 15;
}  // namespace

bool decay_if_matrix(const TensorSpec& spec) { return spec.shape.size() >= 2; }

void AdamWConfig::validate() const {
  ECMOE_CHECK(beta1 >= 0.0 && beta1 < 1.0, "AdamW beta1 must be in [0, 1), got ", beta1);
  ECMOE_CHECK(beta2 >= 0.0 && beta2 < 1.0, "AdamW beta2 must be in [0, 1), got ", beta2);
  ECMOE_CHECK(eps > 0.0 && std::isfinite(eps), "AdamW eps must be positive, got ", eps);
  ECMOE_CHECK(weight_decay >= 0.0 && std::isfinite(weight_decay),
              "AdamW weight_decay must be >= 0, got ", weight_decay);
}

AdamW::AdamW(const TensorTable& table, AdamWConfig config)
    : table_(&table), config_(std::move(config)), m_(table), v_(table) {
  config_.validate();
  if (!config_.decays) config_.decays = decay_if_matrix;
  for (const TensorSpec& spec : table.specs()) {
    const bool decay = config_.weight_decay > 0.0 && config_.decays(spec);
    for (int64_t i = 0; i < spec.numel(); i += kChunkFloats) {
      chunks_.push_back(
          {spec.offset + i, spec.offset + std::min(spec.numel(), i + kChunkFloats), decay});
    }
  }
}

void AdamW::set_step_count(int64_t steps) {
  ECMOE_CHECK(steps >= 0, "AdamW step count must be >= 0, got ", steps);
  step_ = steps;
}

AdamWStepConstants adamw_step_constants(const AdamWConfig& config, int64_t t, float lr) {
  const double steps = double(t);
  const double bias1 = 1.0 - std::pow(config.beta1, steps);
  const double bias2 = 1.0 - std::pow(config.beta2, steps);
  AdamWStepConstants k;
  k.step_size = float(double(lr) / bias1);
  k.bias2_sqrt = float(std::sqrt(bias2));
  k.decay_factor = float(1.0 - double(lr) * config.weight_decay);
  k.beta1 = float(config.beta1);
  k.beta2 = float(config.beta2);
  k.eps = float(config.eps);
  k.one_minus_beta1 = float(1.0 - config.beta1);
  k.one_minus_beta2 = float(1.0 - config.beta2);
  return k;
}

void AdamW::step(FlatBuffer& params, const FlatBuffer& grads, float lr) {
  // The same table object, not merely the same size: equal sizes can hide a different layout.
  ECMOE_CHECK(&params.table() == table_ && &grads.table() == table_,
              "AdamW: parameter and gradient buffers must come from the optimizer's table");
  ECMOE_CHECK(std::isfinite(lr) && lr >= 0.f, "AdamW: learning rate must be >= 0, got ", lr);
  ++step_;
  const AdamWStepConstants k = adamw_step_constants(config_, step_, lr);
  float* p = params.data();
  const float* g = grads.data();
  float* m = m_.data();
  float* v = v_.data();
  const int64_t n_chunks = int64_t(chunks_.size());
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const AdamWChunk chunk = chunks_[size_t(c)];
    const float decay = chunk.decay ? k.decay_factor : 1.f;
    for (int64_t i = chunk.begin; i < chunk.end; ++i)
      adamw_update(p[i], m[i], v[i], g[i], decay, k);
  }
}

}  // namespace ecmoe
