#include "train/evaluate.h"

#include <cmath>
#include <cstddef>
#include <span>

#include "core/error.h"
#include "train/data_parallel.h"

namespace ecmoe {

namespace {

// The loop of both entry points; `forward` runs one batch in evaluation mode.
template <typename Forward>
EvalResult evaluate_with(const Forward& forward, const BatchSource& source, int batches,
                         const dist::Comm* comm) {
  const dist::Comm single = dist::Comm::single();
  const dist::Comm& c = comm ? *comm : single;
  ECMOE_CHECK(batches > 0, "evaluation needs at least one batch");
  ECMOE_CHECK(source.batches() < 0 || batches <= source.batches(), "asked for ", batches,
              " evaluation batches of ", source.batches());
  EvalResult r;
  double loss_sum = 0;  // sum of per-target losses, so batches with more targets weigh more
  for (int i = 0; i < batches; ++i) {
    const Batch batch = slice_batch(source.get(i), c);
    const ForwardResult f = forward(batch);
    loss_sum += f.lm_loss * double(f.counted);
    r.counted += f.counted;
    if (r.layers.empty()) r.layers.resize(f.layer_stats.size());
    for (std::size_t l = 0; l < f.layer_stats.size(); ++l) r.layers[l].merge(f.layer_stats[l]);
  }
  if (c.parallel()) {
    int64_t counted = r.counted;
    c.allreduce_sum(std::span<double>(&loss_sum, 1));
    c.allreduce_sum(std::span<int64_t>(&counted, 1));
    r.counted = counted;
    for (RoutingStats& s : r.layers) s = reduce_routing_stats(s, c);
  }
  r.batches = batches;
  r.loss = r.counted ? loss_sum / double(r.counted) : 0.0;
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace

EvalResult evaluate(Transformer& model, const FlatBuffer& params, const BatchSource& source,
                    int batches, const FlatBuffer* router_state, const dist::Comm* comm) {
  return evaluate_with(
      [&](const Batch& batch) {
        return router_state ? model.forward(params, *router_state, batch, false, 0)
                            : model.forward(params, batch, /*training=*/false, 0);
      },
      source, batches, comm);
}

EvalResult evaluate_on_backend(Transformer& model, const float* params, const BatchSource& source,
                               int batches, const FlatBuffer* router_state) {
  return evaluate_with(
      [&](const Batch& batch) {
        return model.forward_on_backend(params, router_state, batch, /*training=*/false, 0);
      },
      source, batches, nullptr);
}

}  // namespace ecmoe
