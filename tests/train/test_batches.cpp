// Batches: masked-LM corruption statistics and determinism, decoder shift, window placement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "train/batches.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

constexpr int kVocab = 200;

BatchSpec spec_for(ModelKind kind, int batch_size, int seq_len) {
  TrainConfig c;
  c.model.kind = kind;
  c.model.seq_len = seq_len;
  c.model.vocab_size = kVocab;
  return batch_spec(c, batch_size);
}

// Within `sigmas` binomial standard deviations of n·p.
void expect_binomial(int64_t observed, int64_t n, double p, const char* what) {
  const double sd = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(double(observed), n * p, 5 * sd) << what << ": " << observed << " of " << n;
}

}  // namespace

TEST(Masking, RatesAre15PercentThen80_10_10) {
  const int n = 200000;
  std::vector<int32_t> original(n);
  for (int i = 0; i < n; ++i) original[i] = data::kFirstOrdinaryId + i % (kVocab - 7);
  std::vector<int32_t> tokens = original, targets(n);
  mask_tokens(tokens, targets, DataConfig{}, kVocab, Rng(11, 0));
  int64_t selected = 0, masked = 0, unchanged = 0, random = 0;
  for (int i = 0; i < n; ++i) {
    if (targets[i] < 0) {
      EXPECT_EQ(tokens[i], original[i]) << "an unselected position changed at " << i;
      continue;
    }
    ++selected;
    EXPECT_EQ(targets[i], original[i]);
    if (tokens[i] == data::kMaskId) {
      ++masked;
    } else if (tokens[i] == original[i]) {
      ++unchanged;
    } else {
      ++random;
      EXPECT_GE(tokens[i], data::kFirstOrdinaryId);
      EXPECT_LT(tokens[i], kVocab);
    }
  }
  expect_binomial(selected, n, 0.15, "selected");
  // A random replacement equal to the original counts as unchanged: 0.1 · 1/(V−7) of them.
  const double same = 0.1 / (kVocab - 7);
  expect_binomial(masked, selected, 0.8, "[MASK]");
  expect_binomial(random, selected, 0.1 - same, "random");
  expect_binomial(unchanged, selected, 0.1 + same, "unchanged");
}

TEST(Masking, DeterministicFromTheSeed) {
  std::vector<int32_t> a(512, 50), b(512, 50), c(512, 50), ta(512), tb(512), tc(512);
  mask_tokens(a, ta, DataConfig{}, kVocab, Rng(5, 9));
  mask_tokens(b, tb, DataConfig{}, kVocab, Rng(5, 9));
  mask_tokens(c, tc, DataConfig{}, kVocab, Rng(6, 9));
  EXPECT_EQ(a, b);
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Masking, AlwaysAtLeastOneTarget) {
  DataConfig rare;
  rare.mask_prob = 1e-6f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<int32_t> tokens(8, 42), targets(8);
    mask_tokens(tokens, targets, rare, kVocab, Rng(seed, 0));
    int count = 0;
    for (int t : targets) count += t >= 0;
    EXPECT_EQ(count, 1);
  }
}

TEST(Batches, DecoderTargetsAreTheNextToken) {
  const BatchSpec spec = spec_for(ModelKind::kDecoder, 2, 4);
  std::vector<int32_t> windows = {10, 11, 12, 13, 14, 20, 21, 22, 23, 24};
  const Batch b = make_batch(windows, spec, 0);
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(b.seq_len, 4);
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{10, 11, 12, 13, 20, 21, 22, 23}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{11, 12, 13, 14, 21, 22, 23, 24}));
}

TEST(Batches, EncoderBatchIsTheMaskedWindow) {
  const BatchSpec spec = spec_for(ModelKind::kEncoder, 2, 64);
  std::vector<int32_t> windows(128);
  for (int i = 0; i < 128; ++i) windows[i] = 7 + i;
  const Batch b = make_batch(windows, spec, 3);
  ASSERT_EQ(b.tokens.size(), 128u);
  for (int i = 0; i < 128; ++i) {
    if (b.targets[i] >= 0)
      EXPECT_EQ(b.targets[i], windows[i]);
    else
      EXPECT_EQ(b.tokens[i], windows[i]);
  }
}

TEST(Batches, SourcesReadTheStreamDeterministically) {
  TempDir dir("train-batches");
  train_test::write_data_folder(dir.str(), kVocab, 5000, 700);
  const auto train = data::TokenDataset::open(dir.str(), "train");
  const auto val = data::TokenDataset::open(dir.str(), "val");
  const BatchSpec spec = spec_for(ModelKind::kDecoder, 4, 16);
  const BatchSource random = BatchSource::random(train, spec);
  // Same step, same batch; different steps, different windows.
  EXPECT_EQ(random.get(5).tokens, random.get(5).tokens);
  EXPECT_NE(random.get(5).tokens, random.get(6).tokens);
  // Another data seed moves the windows.
  BatchSpec other = spec;
  other.data_seed = 99;
  EXPECT_NE(BatchSource::random(train, other).get(5).tokens, random.get(5).tokens);
  // Every decoder row is a contiguous piece of the stream.
  const Batch b = random.get(7);
  std::vector<int32_t> stream(std::size_t(train.size()));
  train.read(0, stream);
  for (int r = 0; r < 4; ++r) {
    bool found = false;
    for (int64_t s = 0; s + 17 <= train.size() && !found; ++s) {
      found = std::equal(b.tokens.begin() + r * 16, b.tokens.begin() + r * 16 + 16,
                         stream.begin() + s) &&
              b.targets[r * 16 + 15] == stream[std::size_t(s + 16)];
    }
    EXPECT_TRUE(found) << "row " << r;
  }

  // Validation windows span the split from its first token to its last window.
  const BatchSource fixed = BatchSource::fixed(val, spec, 3);
  EXPECT_EQ(fixed.batches(), 3);
  std::vector<int32_t> first(17), last(17);
  val.read(0, first);
  val.read(val.size() - 17, last);
  EXPECT_TRUE(std::equal(first.begin(), first.begin() + 16, fixed.get(0).tokens.begin()));
  EXPECT_TRUE(std::equal(last.begin(), last.begin() + 16, fixed.get(2).tokens.begin() + 3 * 16));
  EXPECT_EQ(fixed.get(1).tokens, fixed.get(1).tokens);
  EXPECT_THROW(fixed.get(3), Error);
  // Encoder validation masks are the same every time.
  const BatchSource masked = BatchSource::fixed(val, spec_for(ModelKind::kEncoder, 4, 16), 2);
  EXPECT_EQ(masked.get(1).targets, masked.get(1).targets);
}

TEST(Batches, SplitShorterThanAWindowIsAnError) {
  TempDir dir("train-short");
  train_test::write_data_folder(dir.str(), kVocab, 5000, 10);
  const auto val = data::TokenDataset::open(dir.str(), "val");
  try {
    BatchSource::fixed(val, spec_for(ModelKind::kEncoder, 2, 16), 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one window"), std::string::npos) << e.what();
  }
}
