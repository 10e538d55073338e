// Leakage through the router, measured: how much a decoder's predictions at positions <= t move
// when every token after t is replaced. Attention is causal, so any change comes from routing
// that looks across positions (batch-wide expert choice, token choice with a batch-wide group or
// binding top-2 capacity). A causal router gives exactly 0, bitwise: see docs/causal.md.
//   For each batch of the source, each cut t and each trial: tokens after t (every sequence) are
//   replaced by random ordinary ids (seeded), targets kept; the evaluation-mode forward runs again
//   and log p(target) at positions <= t is compared with the unperturbed forward's.
#pragma once
#include <cstdint>

#include "model/transformer.h"
#include "train/batches.h"

namespace ecmoe {

struct LeakageOptions {
  int batches = 4;    // batches 0 .. batches-1 of the source
  int cuts = 4;       // cut points per batch, evenly spaced over [0, T-2] (all of them if fewer)
  int trials = 1;     // random replacements per cut
  uint64_t seed = 0;  // replacement ids: Rng(seed, batch · cuts + cut) per trial
};

struct LeakageResult {
  double max_abs_change = 0;      // max |Δ log p(target)| over the compared positions (nats)
  double mean_abs_change = 0;     // mean of the same
  int64_t positions = 0;          // (batch, cut, trial, position <= t with a target) comparisons
  int64_t changed_positions = 0;  // of those, how many differ in any bit
  double base_loss = 0;           // mean −log p(target) over the compared positions, unperturbed
  double loss_change = 0;         // mean loss over them with the future replaced, minus base_loss
  int batches = 0, cuts = 0, trials = 0;
  bool exact() const { return changed_positions == 0; }
};

// Decoder models only (an encoder sees the future by design); needs sequences of >= 2 tokens.
// router_state: the model's state_table() buffer (needed by expert_threshold routing).
LeakageResult measure_leakage(Transformer& model, const FlatBuffer& params,
                              const BatchSource& source, const LeakageOptions& options,
                              const FlatBuffer* router_state = nullptr);
// The same on parameters in the model's dense backend's memory (Transformer::forward_on_backend;
// train_device.h's place_on_device puts them there).
LeakageResult measure_leakage_on_backend(Transformer& model, const float* params,
                                         const BatchSource& source, const LeakageOptions& options,
                                         const FlatBuffer* router_state = nullptr);

}  // namespace ecmoe
