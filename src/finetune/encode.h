// Examples -> token ids, and batches of them padded to their longest member:
//   single: [CLS] a…        pair: [CLS] a… [SEP] b…
// cut to max_len tokens (a pair loses tokens from its longer side first, as BERT's readers do).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "data/tokenizer.h"
#include "finetune/task_data.h"
#include "model/transformer.h"

namespace ecmoe::finetune {

struct EncodedSplit {
  std::vector<std::vector<int32_t>> tokens;  // per example, [CLS] first, at most max_len
  std::vector<int> labels;
  int64_t truncated = 0;  // examples that lost tokens to max_len
};

// Only the first 12·max_len bytes of each text are tokenised: no English text needs more than
// 12 bytes a token, and long documents (reviews, e-mail) would otherwise dominate the run time.
EncodedSplit encode_split(const std::vector<Example>& examples, const data::Tokenizer& tokenizer,
                          int max_len);

// Sequences `indices` of a split as a Batch: T = the longest, shorter ones padded with [PAD] and
// their valid_len set; no LM targets. labels gets their labels.
Batch make_padded_batch(const EncodedSplit& split, std::span<const int64_t> indices,
                        std::vector<int32_t>& labels);

}  // namespace ecmoe::finetune
