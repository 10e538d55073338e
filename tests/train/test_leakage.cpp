// Leakage measure: bitwise 0 for the causal routers, positive for routers that look across
// positions (batch expert choice, per-sequence expert choice, top-1 with one batch-wide group and
// binding capacity). Settings and reasons: docs/causal.md.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/error.h"
#include "data/token_dataset.h"
#include "train/batches.h"
#include "train/evaluate.h"
#include "train/leakage.h"
#include "train/train_device.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

constexpr int kVocab = 64, kSeq = 16, kBatch = 3;

struct Case {
  RouterKind router;
  int group_size;         // 0: the whole batch is one routing group
  float capacity_factor;  // evaluation value
};

ModelConfig decoder(const Case& c) {
  ModelConfig m;
  m.kind = ModelKind::kDecoder;
  m.vocab_size = kVocab;
  m.seq_len = kSeq;
  m.d_model = 16;
  m.n_layers = 2;
  m.n_heads = 2;
  m.d_ff = 32;
  m.moe_every = 1;
  m.moe = default_moe_config(c.router);
  m.moe.n_experts = 4;
  m.moe.group_size = c.group_size;
  m.moe.capacity_factor_eval = c.capacity_factor;
  m.init_std = 0.3f;  // scores far apart: routing reacts to its inputs
  return m;
}

struct Measured {
  LeakageResult leak;
  int64_t dropped = 0;
};

Measured measure(const Case& c) {
  TempDir dir("train-leakage");
  train_test::write_data_folder(dir.str(), kVocab, 3000, 2000);
  const auto val = data::TokenDataset::open(dir.str(), "val");
  TrainConfig tc;
  tc.model = decoder(c);
  const BatchSource source = BatchSource::fixed(val, batch_spec(tc, kBatch), 2);
  Transformer model(tc.model);
  FlatBuffer params(model.table());
  model.init_params(params, 3);
  FlatBuffer state(model.state_table());
  model.init_state(state);
  if (c.router == RouterKind::kExpertThreshold) {  // cutoffs from expert choice on these batches
    ModelConfig ec = tc.model;
    ec.moe.router = RouterKind::kExpertChoice;
    Transformer choice(ec);
    choice.update_cutoffs(state, evaluate(choice, params, source, 2, &state).layers, 1.f);
  }
  Measured m;
  for (const RoutingStats& s : evaluate(model, params, source, 2, &state).layers)
    m.dropped += s.dropped_assignments;
  m.leak = measure_leakage(model, params, source, {2, 5, 2, 11}, &state);
  // On a device's path (eval --leakage --device; the host device here): bitwise the same.
  ecmoe::testing::CheckedBackend be;  // device memory told apart: no host pointer reaches an op
  Transformer placed(tc.model);
  const auto on_device = place_on_device(placed, train_test::checked_train_device(be), params);
  const LeakageResult d =
      measure_leakage_on_backend(placed, on_device.data(), source, {2, 5, 2, 11}, &state);
  EXPECT_EQ(d.positions, m.leak.positions);
  EXPECT_EQ(d.changed_positions, m.leak.changed_positions);
  EXPECT_EQ(d.max_abs_change, m.leak.max_abs_change);
  EXPECT_EQ(d.base_loss, m.leak.base_loss);
  EXPECT_EQ(d.loss_change, m.leak.loss_change);
  return m;
}

class CausalRouter : public ::testing::TestWithParam<Case> {};

TEST_P(CausalRouter, LeakageIsBitwiseZero) {
  const Measured m = measure(GetParam());
  EXPECT_EQ(m.leak.changed_positions, 0);
  EXPECT_EQ(m.leak.max_abs_change, 0.0);
  EXPECT_EQ(m.leak.loss_change, 0.0);
  EXPECT_TRUE(m.leak.exact());
  // 2 batches x 5 cuts x 2 trials, sum over cuts of (t + 1) positions per sequence.
  EXPECT_GT(m.leak.positions, 2 * 2 * kBatch * 5);
  EXPECT_GT(m.leak.base_loss, 0.0);
  if (GetParam().router == RouterKind::kTop1) {
    EXPECT_GT(m.dropped, 0);  // capacity binds, so the order of filling is exercised
  }
}

// Top-1 at c = 1 with per-sequence groups: capacity 4 of 16 slots per expert, filled in position
// order. Top-2 at c = 2: capacity 16 = the group, never binds.
INSTANTIATE_TEST_SUITE_P(Leakage, CausalRouter,
                         ::testing::Values(Case{RouterKind::kDense, 0, 2.f},
                                           Case{RouterKind::kHash, 0, 2.f},
                                           Case{RouterKind::kTop1, kSeq, 1.f},
                                           Case{RouterKind::kTop2, kSeq, 2.f},
                                           Case{RouterKind::kExpertThreshold, 0, 2.f}),
                         [](const auto& info) { return router_name(info.param.router); });

TEST(Leakage, BatchExpertChoiceLeaks) {
  const Measured m = measure({RouterKind::kExpertChoice, 0, 2.f});
  EXPECT_GT(m.leak.changed_positions, 0);
  EXPECT_GT(m.leak.max_abs_change, 0.0);
  EXPECT_GE(m.leak.max_abs_change, m.leak.mean_abs_change);
  EXPECT_GT(m.leak.mean_abs_change, 0.0);
  EXPECT_FALSE(m.leak.exact());
}

TEST(Leakage, PerSequenceExpertChoiceLeaks) {
  EXPECT_GT(measure({RouterKind::kExpertChoice, kSeq, 2.f}).leak.changed_positions, 0);
}

TEST(Leakage, Top1WithOneBatchGroupLeaks) {
  EXPECT_GT(measure({RouterKind::kTop1, 0, 1.f}).leak.changed_positions, 0);
}

TEST(Leakage, EncoderIsAnError) {
  TempDir dir("train-leakage-enc");
  train_test::write_data_folder(dir.str(), kVocab, 3000, 2000);
  const auto val = data::TokenDataset::open(dir.str(), "val");
  TrainConfig tc;
  tc.model = decoder({RouterKind::kDense, 0, 2.f});
  tc.model.kind = ModelKind::kEncoder;
  const BatchSource source = BatchSource::fixed(val, batch_spec(tc, kBatch), 1);
  Transformer model(tc.model);
  FlatBuffer params(model.table());
  model.init_params(params, 3);
  EXPECT_THROW(measure_leakage(model, params, source, {1, 2, 1, 0}), Error);
}

}  // namespace
