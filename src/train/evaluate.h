// Evaluation: the model's mean language-model loss over a fixed set of batches (no auxiliary
// losses, evaluation capacity factors, no jitter) and each layer's routing statistics merged
// over them.
#pragma once
#include <cstdint>
#include <vector>

#include "model/transformer.h"
#include "train/batches.h"

namespace ecmoe {

struct EvalResult {
  double loss = 0;        // mean cross-entropy per counted target (nats)
  double perplexity = 0;  // exp(loss)
  int64_t counted = 0;    // targets the mean is over
  int batches = 0;
  std::vector<RoutingStats> layers;  // per layer, merged over the batches
};

// Batches 0 .. batches-1 of `source` (a fixed source: batches <= source.batches()). With a
// communicator of P ranks, each rank evaluates its slice of every batch (data_parallel.h) and
// the sums are reduced: every rank returns the whole result.
// router_state: the model's state_table() buffer (needed by expert_threshold routing).
EvalResult evaluate(Transformer& model, const FlatBuffer& params, const BatchSource& source,
                    int batches, const FlatBuffer* router_state = nullptr,
                    const dist::Comm* comm = nullptr);
// The same in one process on parameters in the model's dense backend's memory
// (Transformer::forward_on_backend).
EvalResult evaluate_on_backend(Transformer& model, const float* params, const BatchSource& source,
                               int batches, const FlatBuffer* router_state = nullptr);

}  // namespace ecmoe
