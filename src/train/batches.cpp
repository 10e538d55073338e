#include "train/batches.h"

#include <cstddef>

#include "core/error.h"
#include "core/rng_streams.h"
#include "data/tokenizer.h"

namespace ecmoe {

namespace {
// Validation masks come from streams no training step uses.
constexpr uint64_t kFixedMaskStream = streams::kValidationMasks;
}  // namespace

BatchSpec batch_spec(const TrainConfig& config, int batch_size) {
  return {.kind = config.model.kind,
          .batch_size = batch_size,
          .seq_len = config.model.seq_len,
          .vocab_size = config.model.vocab_size,
          .masking = config.data,
          .data_seed = config.seeds.data,
          .mask_seed = config.seeds.mask};
}

int window_width(ModelKind kind, int seq_len) {
  return kind == ModelKind::kDecoder ? seq_len + 1 : seq_len;
}

void mask_tokens(std::span<int32_t> tokens, std::span<int32_t> targets, const DataConfig& masking,
                 int vocab_size, const Rng& rng) {
  ECMOE_CHECK(tokens.size() == targets.size() && !tokens.empty(), "mask_tokens: bad sizes");
  ECMOE_CHECK(vocab_size > data::kFirstOrdinaryId, "mask_tokens: vocabulary of ", vocab_size,
              " has no ordinary tokens");
  const float keep_above = masking.mask_token_prob + masking.random_token_prob;
  bool any = false;
  std::size_t least = 0;
  float least_draw = 2.f;
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    const float select = rng.uniform(3 * p);
    if (select < least_draw) least_draw = select, least = p;
    targets[p] = -1;
    if (select >= masking.mask_prob) continue;
    any = true;
    targets[p] = tokens[p];
    const float how = rng.uniform(3 * p + 1);
    if (how < masking.mask_token_prob)
      tokens[p] = data::kMaskId;
    else if (how < keep_above)
      tokens[p] = data::kFirstOrdinaryId +
                  int32_t(rng.below(3 * p + 2, uint64_t(vocab_size - data::kFirstOrdinaryId)));
  }
  if (!any) {
    targets[least] = tokens[least];
    tokens[least] = data::kMaskId;
  }
}

Batch make_batch(const std::vector<int32_t>& windows, const BatchSpec& spec, uint64_t mask_stream) {
  const int B = spec.batch_size, T = spec.seq_len, W = window_width(spec.kind, T);
  ECMOE_CHECK(windows.size() == std::size_t(B) * W, "make_batch: expected ", B, " windows of ", W,
              " tokens");
  Batch batch;
  batch.batch_size = B;
  batch.seq_len = T;
  batch.tokens.resize(std::size_t(B) * T);
  batch.targets.resize(batch.tokens.size());
  if (spec.kind == ModelKind::kDecoder) {
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        batch.tokens[std::size_t(b) * T + t] = windows[std::size_t(b) * W + t];
        batch.targets[std::size_t(b) * T + t] = windows[std::size_t(b) * W + t + 1];
      }
  } else {
    batch.tokens = windows;
    mask_tokens(batch.tokens, batch.targets, spec.masking, spec.vocab_size,
                Rng(spec.mask_seed, mask_stream));
  }
  return batch;
}

BatchSource::BatchSource(const data::TokenDataset& split, const BatchSpec& spec, int64_t batches)
    : split_(&split),
      spec_(spec),
      batches_(batches),
      width_(window_width(spec.kind, spec.seq_len)) {
  ECMOE_CHECK(split.size() >= width_, "the ", split.split(), " split has ", split.size(),
              " tokens, fewer than one window of ", width_, " (model.seq_len ", spec.seq_len,
              "); prepare more data or shorten the sequences");
  ECMOE_CHECK(split.vocab_size() <= spec.vocab_size, "the ", split.split(), " split has ",
              split.vocab_size(), " token ids but the model only ", spec.vocab_size);
}

BatchSource BatchSource::random(const data::TokenDataset& split, const BatchSpec& spec) {
  return BatchSource(split, spec, -1);
}

BatchSource BatchSource::fixed(const data::TokenDataset& split, const BatchSpec& spec,
                               int batches) {
  ECMOE_CHECK(batches >= 0, "a fixed batch source needs >= 0 batches");
  return BatchSource(split, spec, batches);
}

std::vector<int64_t> BatchSource::starts(int64_t index) const {
  const int B = spec_.batch_size;
  const int64_t span = split_->size() - width_;  // the last possible start
  std::vector<int64_t> s(B);
  if (batches_ < 0) {
    const Rng rng(spec_.data_seed, uint64_t(index));
    for (int b = 0; b < B; ++b) s[b] = int64_t(rng.below(uint64_t(b), uint64_t(span + 1)));
  } else {
    // Window j of all batches × B, spread evenly from the first token to the last window.
    const int64_t count = batches_ * B;
    for (int b = 0; b < B; ++b) {
      const int64_t j = index * B + b;
      s[b] = count > 1 ? j * span / (count - 1) : 0;
    }
  }
  return s;
}

Batch BatchSource::get(int64_t index) const {
  ECMOE_CHECK(index >= 0 && (batches_ < 0 || index < batches_), "batch ", index,
              " is out of range");
  std::vector<int32_t> windows(std::size_t(spec_.batch_size) * width_);
  const auto s = starts(index);
  for (int b = 0; b < spec_.batch_size; ++b)
    split_->read(s[b], std::span<int32_t>(windows).subspan(std::size_t(b) * width_, width_));
  const uint64_t stream = batches_ < 0 ? uint64_t(index) : kFixedMaskStream + uint64_t(index);
  return make_batch(windows, spec_, stream);
}

}  // namespace ecmoe
