// Batches for the model's objective, cut from a split's token stream. Every batch is a pure
// function of (seeds, index): a resumed run at step s draws exactly the batch an uninterrupted
// run would, with no loader state to save.
//   encoder (masked LM): a window of T tokens, corrupted (train_config.h DataConfig); targets are
//                        the original ids at the selected positions, -1 elsewhere.
//   decoder (next token): a window of T + 1 tokens; tokens = w[0:T], targets = w[1:T+1].
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/rng.h"
#include "data/token_dataset.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "train/train_config.h"

namespace ecmoe {

struct BatchSpec {
  ModelKind kind = ModelKind::kEncoder;
  int batch_size = 1;
  int seq_len = 1;
  int vocab_size = 8;
  DataConfig masking;  // encoder only
  uint64_t data_seed = 0;
  uint64_t mask_seed = 0;
};

// The spec of a run's batches (model.vocab_size must be resolved), with `batch_size` sequences.
BatchSpec batch_spec(const TrainConfig& config, int batch_size);

// Tokens per window: T for an encoder, T + 1 for a decoder (the shifted targets).
int window_width(ModelKind kind, int seq_len);

// Masked-LM corruption of one batch in place: tokens [n] in, tokens corrupted and targets [n]
// written. Position p uses draws 3p, 3p+1, 3p+2 of `rng`. If no position is selected (only
// likely for tiny batches) the one with the smallest selection draw is, so a loss exists.
void mask_tokens(std::span<int32_t> tokens, std::span<int32_t> targets, const DataConfig& masking,
                 int vocab_size, const Rng& rng);

// B windows of window_width tokens each, row-major, into a Batch for the objective.
Batch make_batch(const std::vector<int32_t>& windows, const BatchSpec& spec, uint64_t mask_stream);

// Batch number `index` of a split.
class BatchSource {
 public:
  // Training: each batch reads B windows at random positions, from Rng(data_seed, index).
  static BatchSource random(const data::TokenDataset& split, const BatchSpec& spec);
  // Validation: `batches` batches of evenly spaced windows over the whole split, the same every
  // time (their masks too).
  static BatchSource fixed(const data::TokenDataset& split, const BatchSpec& spec, int batches);

  Batch get(int64_t index) const;
  const BatchSpec& spec() const { return spec_; }
  int64_t batches() const { return batches_; }  // fixed sources: how many; random: unbounded (-1)

 private:
  BatchSource(const data::TokenDataset& split, const BatchSpec& spec, int64_t batches);
  std::vector<int64_t> starts(int64_t index) const;

  const data::TokenDataset* split_;
  BatchSpec spec_;
  int64_t batches_;
  int width_;
};

}  // namespace ecmoe
