#include "train/eval_batches.h"

#include <algorithm>
#include <cstdint>

namespace ecmoe {

int max_fixed_batches(const data::TokenDataset& split, const BatchSpec& spec) {
  const int64_t width = window_width(spec.kind, spec.seq_len);
  const int64_t span = std::max<int64_t>(split.size() - width, 0);  // the last window's start
  // Windows spaced at most `width` apart from 0 to span: ceil(span / width) + 1 of them.
  const int64_t windows = (span + width - 1) / width + 1;
  const int64_t batches = (windows + spec.batch_size - 1) / spec.batch_size;
  return int(std::clamp<int64_t>(batches, 1, INT32_MAX));
}

FixedBatches cap_fixed_batches(const data::TokenDataset& split, const std::string& split_name,
                               const BatchSpec& spec, int requested, const std::string& what) {
  const int cap = max_fixed_batches(split, spec);
  if (requested <= cap) return {requested, ""};
  return {cap, what + " " + std::to_string(requested) + " is more than the " + split_name +
                   " split holds (" + std::to_string(split.size()) + " tokens, covered by " +
                   std::to_string(cap) + " batches of " + std::to_string(spec.batch_size) +
                   " windows): evaluating " + std::to_string(cap)};
}

}  // namespace ecmoe
