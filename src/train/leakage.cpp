// log p are compared per position: [B, T] rows, a position (b, s) is compared for a cut t when
// s <= t and its target is >= 0.
#include "train/leakage.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/tokenizer.h"

namespace ecmoe {

namespace {

// Distinct cut points spread evenly over [0, T-2] (t = T-1 has no future to replace).
std::vector<int> cut_points(int seq_len, int cuts) {
  std::vector<int> out;
  const int last = seq_len - 2;
  if (cuts > last) {
    for (int t = 0; t <= last; ++t) out.push_back(t);
    return out;
  }
  for (int i = 0; i < cuts; ++i) out.push_back(((i + 1) * (last + 1)) / (cuts + 1));
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The measurement of both entry points; `run` is the evaluation-mode forward of one batch.
template <typename Forward>
LeakageResult measure_with(const Forward& run, Transformer& model, const BatchSource& source,
                           const LeakageOptions& options) {
  const ModelConfig& config = model.config();
  ECMOE_CHECK(config.kind == ModelKind::kDecoder,
              "leakage: needs a decoder model (an encoder reads the whole sequence by design)");
  ECMOE_CHECK(options.batches > 0 && options.cuts > 0 && options.trials > 0,
              "leakage: batches, cuts and trials must be positive");
  ECMOE_CHECK(source.batches() < 0 || options.batches <= source.batches(), "leakage: asked for ",
              options.batches, " batches of ", source.batches());
  const int ordinary = config.vocab_size - data::kFirstOrdinaryId;
  ECMOE_CHECK(ordinary > 0, "leakage: the vocabulary has no ordinary ids");

  LeakageResult r;
  r.batches = options.batches;
  r.trials = options.trials;
  double abs_sum = 0, base_sum = 0, perturbed_sum = 0;
  for (int i = 0; i < options.batches; ++i) {
    const Batch batch = source.get(i);
    const int B = batch.batch_size, T = batch.seq_len;
    ECMOE_CHECK(T >= 2, "leakage: sequences of ", T, " token(s) have no future to replace");
    run(batch);
    const std::vector<float> base = model.target_log_probs();
    const std::vector<int> cuts = cut_points(T, options.cuts);
    r.cuts = int(cuts.size());
    for (std::size_t c = 0; c < cuts.size(); ++c) {
      const int t = cuts[c];
      const Rng rng(options.seed, uint64_t(i) * cuts.size() + c);
      for (int trial = 0; trial < options.trials; ++trial) {
        Batch other = batch;
        for (int b = 0; b < B; ++b)
          for (int s = t + 1; s < T; ++s) {
            const uint64_t draw = (uint64_t(trial) * B + b) * T + s;
            other.tokens[b * T + s] = data::kFirstOrdinaryId + int32_t(rng.below(draw, ordinary));
          }
        run(other);
        const std::vector<float> lp = model.target_log_probs();
        for (int b = 0; b < B; ++b)
          for (int s = 0; s <= t; ++s) {
            const int64_t p = int64_t(b) * T + s;
            if (batch.targets[p] < 0) continue;
            const double diff = double(lp[p]) - double(base[p]);
            r.max_abs_change = std::max(r.max_abs_change, std::abs(diff));
            abs_sum += std::abs(diff);
            base_sum -= base[p];
            perturbed_sum -= lp[p];
            r.changed_positions += std::memcmp(&lp[p], &base[p], sizeof(float)) != 0;
            ++r.positions;
          }
      }
    }
  }
  if (r.positions > 0) {
    r.mean_abs_change = abs_sum / double(r.positions);
    r.base_loss = base_sum / double(r.positions);
    r.loss_change = (perturbed_sum - base_sum) / double(r.positions);
  }
  return r;
}

}  // namespace

LeakageResult measure_leakage(Transformer& model, const FlatBuffer& params,
                              const BatchSource& source, const LeakageOptions& options,
                              const FlatBuffer* router_state) {
  return measure_with(
      [&](const Batch& batch) {
        return router_state ? model.forward(params, *router_state, batch, /*training=*/false, 0)
                            : model.forward(params, batch, /*training=*/false, 0);
      },
      model, source, options);
}

LeakageResult measure_leakage_on_backend(Transformer& model, const float* params,
                                         const BatchSource& source, const LeakageOptions& options,
                                         const FlatBuffer* router_state) {
  return measure_with(
      [&](const Batch& batch) {
        return model.forward_on_backend(params, router_state, batch, /*training=*/false, 0);
      },
      model, source, options);
}

}  // namespace ecmoe
