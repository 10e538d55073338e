// Causality of the decoder. With a causal router, what the model computes at positions <= t
// (final hidden states, and the loss taken there) is bitwise unchanged when the tokens after t
// change. Causal routers: dense, hash; top-1 with per-sequence routing groups (slots are filled in
// position order, so within a sequence a token's fate depends only on earlier tokens; with one
// group for the whole batch, a late token of sequence 0 can take the slot of an early token of
// sequence 1); top-2 only while its capacity never binds (it fills every first choice before any
// second choice, so a future token's first choice can evict a past token's second choice).
// Batch expert choice is not causal: each expert's top-k looks at every token of the group, so
// future tokens change which past tokens are picked (the paper's stated limit for decoders).
// The leak tests document both.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/threads.h"
#include "model_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

constexpr int kBatch = 3, kSeq = 8;

struct CausalCase {
  RouterKind router;
  float capacity_factor;  // token choice (per-sequence groups of kSeq tokens, 4 experts)
};

ModelConfig decoder_config(const CausalCase& c) {
  ModelConfig cfg = tiny_config(ModelKind::kDecoder, c.router);
  cfg.moe_every = 1;  // every layer routes
  if (router_is_token_choice(c.router)) {
    cfg.moe.group_size = kSeq;
    cfg.moe.capacity_factor_train = c.capacity_factor;
  }
  return cfg;
}

// Copies of the final hidden rows of positions <= t of every sequence, plus the loss at those
// positions only (targets after t ignored).
struct Prefix {
  std::vector<float> hidden;
  double lm_loss = 0;
  int64_t dropped = 0;
};

Prefix prefix_of(Transformer& model, const FlatBuffer& params, Batch batch, int t) {
  for (int b = 0; b < kBatch; ++b)
    for (int s = t + 1; s < kSeq; ++s) batch.targets[b * kSeq + s] = -1;
  Prefix p;
  const ForwardResult r = model.forward(params, batch, true, 0);
  p.lm_loss = r.lm_loss;
  for (const RoutingStats& st : r.layer_stats) p.dropped += st.dropped_assignments;
  const int d = model.config().d_model;
  for (int b = 0; b < kBatch; ++b) {
    const float* row = model.final_hidden() + int64_t(b) * kSeq * d;
    p.hidden.insert(p.hidden.end(), row, row + int64_t(t + 1) * d);
  }
  return p;
}

// How many (cut t, perturbation) pairs changed anything at positions <= t.
int leaks(const CausalCase& c, int64_t* dropped = nullptr) {
  const ModelConfig cfg = decoder_config(c);
  Transformer model(cfg);
  FlatBuffer params(model.table());
  model.init_params(params, 4);
  const Batch batch = random_batch(cfg, kBatch, kSeq, 9);
  int changed = 0;
  for (int t = 0; t + 1 < kSeq; ++t) {
    const Prefix base = prefix_of(model, params, batch, t);
    if (dropped) *dropped += base.dropped;
    for (int trial = 0; trial < 4; ++trial) {
      Batch other = batch;
      const Rng rng(100 + t, trial);
      for (int b = 0; b < kBatch; ++b)
        for (int s = t + 1; s < kSeq; ++s)
          other.tokens[b * kSeq + s] = 5 + int32_t(rng.below(b * kSeq + s, cfg.vocab_size - 5));
      const Prefix p = prefix_of(model, params, other, t);
      const bool same =
          std::memcmp(&p.lm_loss, &base.lm_loss, sizeof(double)) == 0 &&
          std::memcmp(p.hidden.data(), base.hidden.data(), p.hidden.size() * sizeof(float)) == 0;
      changed += !same;
    }
  }
  return changed;
}

class DecoderCausality : public ::testing::TestWithParam<CausalCase> {
 protected:
  void SetUp() override { set_thread_count(1); }
  void TearDown() override { set_thread_count(0); }
};

TEST_P(DecoderCausality, PastIsBitwiseUnchangedByFutureTokens) {
  int64_t dropped = 0;
  EXPECT_EQ(leaks(GetParam(), &dropped), 0);
  if (GetParam().router == RouterKind::kTop1) {
    EXPECT_GT(dropped, 0);  // capacity binds: tested where the order of filling matters
  }
}

// Top-1 at capacity factor 0.75 drops tokens (capacity 2 of 8 per expert per sequence); top-2 at
// 2.0 has capacity 8 = the group, so nothing is dropped.
INSTANTIATE_TEST_SUITE_P(CausalRouters, DecoderCausality,
                         ::testing::Values(CausalCase{RouterKind::kDense, 1.f},
                                           CausalCase{RouterKind::kHash, 1.f},
                                           CausalCase{RouterKind::kTop1, 0.75f},
                                           CausalCase{RouterKind::kTop2, 2.f}),
                         [](const auto& info) { return router_name(info.param.router); });

// The documented leaks: batch expert choice, and top-2 whose capacity binds, let future tokens
// change past outputs.
TEST(DecoderCausalityLeak, BatchExpertChoiceSeesTheFuture) {
  set_thread_count(1);
  EXPECT_GT(leaks({RouterKind::kExpertChoice, 0.f}), 0);
  set_thread_count(0);
}

TEST(DecoderCausalityLeak, Top2WithBindingCapacitySeesTheFuture) {
  set_thread_count(1);
  EXPECT_GT(leaks({RouterKind::kTop2, 0.75f}), 0);
  set_thread_count(0);
}

// The attention itself is causal even when routing is not: with a dense FFN, nothing at position
// t depends on position t + 1. Checked above; here the converse sanity check that the test can
// see a change at all: changing a token at or before t does change the prefix.
TEST(DecoderCausalityLeak, ChangingThePastIsVisible) {
  set_thread_count(1);
  const ModelConfig cfg = decoder_config({RouterKind::kDense, 1.f});
  Transformer model(cfg);
  FlatBuffer params(model.table());
  model.init_params(params, 4);
  const Batch batch = random_batch(cfg, kBatch, kSeq, 9);
  const Prefix base = prefix_of(model, params, batch, 3);
  Batch other = batch;
  other.tokens[2] = other.tokens[2] == 5 ? 6 : 5;
  const Prefix p = prefix_of(model, params, other, 3);
  EXPECT_NE(std::memcmp(p.hidden.data(), base.hidden.data(), p.hidden.size() * sizeof(float)), 0);
  set_thread_count(0);
}

}  // namespace
