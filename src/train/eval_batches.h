// How many fixed evaluation batches a split can give. The fixed windows are spread evenly over the
// split (train/batches.h), so past the number that covers every token once they only overlap
// more; a request beyond that (`--batches 1e9`, eval.batches=1e9) would run for hours or for ever
// re-reading the same text. It is capped, with a note for the user.
#pragma once
#include <string>

#include "data/token_dataset.h"
#include "train/batches.h"

namespace ecmoe {

// The fewest batches of spec.batch_size windows whose evenly spaced windows cover every token of
// `split` (at least 1).
int max_fixed_batches(const data::TokenDataset& split, const BatchSpec& spec);

struct FixedBatches {
  int batches = 0;
  std::string note;  // empty, or one line saying that `requested` was capped
};

// `requested` when the split holds that many, else max_fixed_batches with a note naming `what`
// (e.g. "--batches", "eval.batches") and `split_name`.
FixedBatches cap_fixed_batches(const data::TokenDataset& split, const std::string& split_name,
                               const BatchSpec& spec, int requested, const std::string& what);

}  // namespace ecmoe
