// Incremental decoding: the KV-cache logits at every position equal the logits of a full forward
// over the prefix, for each router that can decode token by token; batch expert choice is refused.
// Sampling: greedy, top-k, top-p and the temperature's effect.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "core/error.h"
#include "model/kv_decoder.h"
#include "model/sampler.h"
#include "model_test_util.h"
#include "nn/tied_output.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

constexpr int kSeq = 10;

ModelConfig decoder(RouterKind router) {
  ModelConfig c = tiny_config(ModelKind::kDecoder, router);
  c.moe_every = 1;
  if (router_is_token_choice(router)) c.moe.group_size = 1;  // as at decode time
  return c;
}

// Logits of the last position of a full forward over tokens[0..len).
std::vector<float> full_logits(Transformer& model, const FlatBuffer& params,
                               const FlatBuffer& state, const std::vector<int32_t>& tokens,
                               int len) {
  Batch b;
  b.batch_size = 1;
  b.seq_len = len;
  b.tokens.assign(tokens.begin(), tokens.begin() + len);
  b.targets.assign(len, -1);
  b.targets[len - 1] = 0;
  model.forward(params, state, b, /*training=*/false, 0);
  const int d = model.config().d_model, V = model.config().vocab_size;
  std::vector<float> logits(V);
  nn::tied_output_forward(logits.data(), model.final_hidden() + int64_t(len - 1) * d,
                          params.get("embed.tokens"), {1, d, V});
  return logits;
}

void check_router(RouterKind router) {
  const ModelConfig cfg = decoder(router);
  Transformer model(cfg);
  FlatBuffer params(model.table()), state(model.state_table());
  model.init_params(params, 5);
  model.init_state(state);
  const Batch batch = random_batch(cfg, 2, kSeq, 13);
  if (router == RouterKind::kExpertThreshold) {
    ModelConfig ec = cfg;
    ec.moe.router = RouterKind::kExpertChoice;
    Transformer choice(ec);
    // Cutoffs from other tokens: calibrated on these, a score would sit exactly on a cutoff and
    // the last-bit differences between the two paths could flip it.
    const ForwardResult f = choice.forward(params, state, random_batch(cfg, 4, kSeq, 99), false, 0);
    choice.update_cutoffs(state, f.layer_stats, 1.f);
  }
  const std::vector<int32_t> tokens(batch.tokens.begin(), batch.tokens.begin() + kSeq);
  KvDecoder kv(model, params, state);
  int routed_slots = 0;
  for (int p = 0; p < kSeq; ++p) {
    const std::vector<float> step = kv.step(tokens[p]);
    EXPECT_EQ(kv.position(), p + 1);
    for (int l = 0; l < cfg.n_layers; ++l) routed_slots += kv.ffn_layer(l).plan().slot_count();
    const std::vector<float> full = full_logits(model, params, state, tokens, p + 1);
    double worst = 0, scale = 0;
    for (size_t v = 0; v < full.size(); ++v) {
      worst = std::max(worst, std::abs(double(step[v]) - full[v]));
      scale = std::max(scale, std::abs(double(full[v])));
    }
    // Same arithmetic per row, summation orders of the GEMMs and the attention may differ.
    EXPECT_LE(worst, 2e-5 * std::max(1.0, scale)) << router_name(router) << " position " << p;
  }
  EXPECT_GT(routed_slots, 0);
  EXPECT_THROW(kv.step(tokens[0]), Error);  // past the sequence length
  kv.reset();                               // a new sequence starts from an empty cache
  const std::vector<float> again = kv.step(tokens[0]),
                           first = full_logits(model, params, state, tokens, 1);
  for (size_t v = 0; v < first.size(); ++v) EXPECT_NEAR(again[v], first[v], 1e-5);
}

TEST(KvDecoder, MatchesFullPrefixDense) { check_router(RouterKind::kDense); }
TEST(KvDecoder, MatchesFullPrefixTop2) { check_router(RouterKind::kTop2); }
TEST(KvDecoder, MatchesFullPrefixHash) { check_router(RouterKind::kHash); }
TEST(KvDecoder, MatchesFullPrefixThresholds) { check_router(RouterKind::kExpertThreshold); }

TEST(KvDecoder, BatchExpertChoiceIsRefused) {
  const ModelConfig cfg = decoder(RouterKind::kExpertChoice);
  Transformer model(cfg);
  FlatBuffer params(model.table()), state(model.state_table());
  EXPECT_THROW(KvDecoder(model, params, state), Error);
}

TEST(Sampler, GreedyTopKTopPAndTemperature) {
  const std::vector<float> logits = {0.f, 2.f, 1.f, 2.f, -1.f};
  EXPECT_EQ(sample_token(logits, {0.f, 0, 1.f}, 0.99f), 1);  // greedy: ties to the lower id
  EXPECT_EQ(sample_token(logits, {1.f, 1, 1.f}, 0.99f), 1);  // top-1
  EXPECT_EQ(sample_token(logits, {1.f, 0, 0.01f}, 0.99f), 1);
  for (float u : {0.f, 0.3f, 0.7f, 0.999f}) {
    const int id = sample_token(logits, {1.f, 2, 1.f}, u);
    EXPECT_TRUE(id == 1 || id == 3);
  }
  // Frequencies follow softmax(logits / T): at T = 1, p(2) / p(4) = e^2.
  std::map<int, int> count;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++count[sample_token(logits, {1.f, 0, 1.f}, (i + 0.5f) / draws)];
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int id = 0; id < 5; ++id)
    EXPECT_NEAR(count[id] / double(draws), std::exp(logits[id]) / z, 1e-3);
  const SamplingConfig negative_t{-1.f, 0, 1.f}, zero_p{1.f, 0, 0.f};
  EXPECT_THROW(negative_t.validate(), Error);
  EXPECT_THROW(zero_p.validate(), Error);
}

}  // namespace
