#include "finetune/encode.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "core/error.h"
#include "finetune/task_formats.h"

namespace ecmoe::finetune {

EncodedSplit encode_split(const std::vector<Example>& examples, const data::Tokenizer& tokenizer,
                          int max_len) {
  ECMOE_CHECK(max_len >= 2, "encode: max_len ", max_len, " leaves no room for text");
  const size_t max_bytes = size_t(12) * size_t(max_len);
  EncodedSplit out;
  out.tokens.reserve(examples.size());
  out.labels.reserve(examples.size());
  for (const Example& e : examples) {
    std::vector<int> a = tokenizer.encode(utf8_prefix(e.text_a, max_bytes));
    std::vector<int> b;
    const bool pair = !e.text_b.empty();
    if (pair) b = tokenizer.encode(utf8_prefix(e.text_b, max_bytes));
    const size_t budget = size_t(max_len) - 1 - (pair ? 1 : 0);
    if (a.size() + b.size() > budget) {
      ++out.truncated;
      while (a.size() + b.size() > budget) (a.size() >= b.size() ? a : b).pop_back();
    }
    std::vector<int32_t> ids;
    ids.reserve(1 + a.size() + b.size() + 1);
    ids.push_back(data::kClsId);
    ids.insert(ids.end(), a.begin(), a.end());
    if (pair) {
      ids.push_back(data::kSepId);
      ids.insert(ids.end(), b.begin(), b.end());
    }
    out.tokens.push_back(std::move(ids));
    out.labels.push_back(e.label);
  }
  return out;
}

Batch make_padded_batch(const EncodedSplit& split, std::span<const int64_t> indices,
                        std::vector<int32_t>& labels) {
  Batch batch;
  batch.batch_size = int(indices.size());
  int T = 1;
  for (const int64_t i : indices) T = std::max(T, int(split.tokens.at(i).size()));
  batch.seq_len = T;
  batch.tokens.assign(size_t(batch.batch_size) * T, data::kPadId);
  batch.valid_len.resize(batch.batch_size);
  labels.resize(batch.batch_size);
  for (int b = 0; b < batch.batch_size; ++b) {
    const auto& ids = split.tokens[indices[b]];
    std::copy(ids.begin(), ids.end(), batch.tokens.begin() + int64_t(b) * T);
    batch.valid_len[b] = int(ids.size());
    labels[b] = split.labels[indices[b]];
  }
  return batch;
}

}  // namespace ecmoe::finetune
