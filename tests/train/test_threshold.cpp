// Threshold cutoffs in training and checkpoints: expert-choice runs keep them, they survive save
// and load (and older checkpoints without them still load), calibration on validation data keeps
// the mean experts per token within 10% of c, and threshold training after an expert-choice
// warm-up runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/token_dataset.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

constexpr int kVocab = 64;

class Threshold : public ::testing::Test {
 protected:
  void SetUp() override { train_test::write_data_folder(dir / "data", kVocab, 20000, 6000); }

  TrainConfig decoder(RouterKind router, const std::string& out) {
    TrainConfig c = train_test::tiny_config(dir / "data", dir / out);
    c.model.kind = ModelKind::kDecoder;
    c.model.moe = default_moe_config(router);
    c.model.moe.n_experts = 4;
    c.model.moe.threshold_warmup_steps = 3;
    c.model.moe_every = 1;
    c.steps = 8;
    return c;
  }

  TrainResult run(const TrainConfig& config) {
    std::FILE* sink = std::fopen("/dev/null", "w");
    TrainOptions options{.resume = false, .terminal = false, .progress = sink};
    TrainResult r = train(config, options);
    std::fclose(sink);
    return r;
  }

  TempDir dir{"train-threshold"};
};

std::vector<float> cutoffs_of(const Checkpoint& ck, const Transformer& model, bool* found) {
  FlatBuffer state(model.state_table());
  model.init_state(state);
  *found = ck.load_router_state(state);
  return std::vector<float>(state.data(), state.data() + state.size());
}

TEST_F(Threshold, ExpertChoiceRunsKeepCutoffsAndTheySurviveSaveAndLoad) {
  const TrainResult r = run(decoder(RouterKind::kExpertChoice, "ec"));
  const Checkpoint ck = Checkpoint::open(r.checkpoint);
  Transformer model(ck.config().model);
  ASSERT_TRUE(model.has_cutoffs());
  bool found = false;
  const std::vector<float> cutoffs = cutoffs_of(ck, model, &found);
  ASSERT_TRUE(found);
  for (const TensorSpec& s : model.state_table().specs())
    for (int64_t i = 0; i < s.numel(); ++i) {
      const float v = cutoffs[s.offset + i];
      EXPECT_TRUE(std::isfinite(v) && v > 0.f && v < 1.f) << s.name << "[" << i << "] = " << v;
    }

  // Save again (as calibrate does) and read back bitwise; a checkpoint saved without router
  // state (the format before it existed) loads, and reports none.
  FlatBuffer params(model.table()), state(model.state_table());
  AdamW adam(model.table(), ck.config().optimizer);
  TrainState ts;
  ck.load_training_state(params, adam, ts);
  ASSERT_TRUE(ck.load_router_state(state));
  const std::string again = dir / "again.safetensors";
  save_checkpoint(again, ck.config(), ck.data(), params, adam, ts, &state);
  bool found_again = false;
  const std::vector<float> reread = cutoffs_of(Checkpoint::open(again), model, &found_again);
  ASSERT_TRUE(found_again);
  EXPECT_EQ(std::memcmp(reread.data(), cutoffs.data(), cutoffs.size() * sizeof(float)), 0);

  const std::string old = dir / "old.safetensors";
  save_checkpoint(old, ck.config(), ck.data(), params, adam, ts);
  const Checkpoint old_ck = Checkpoint::open(old);
  FlatBuffer old_params(model.table());
  EXPECT_NO_THROW(old_ck.load_params(old_params));
  bool found_old = true;
  const std::vector<float> none = cutoffs_of(old_ck, model, &found_old);
  EXPECT_FALSE(found_old);
  for (const TensorSpec& s : model.state_table().specs())
    for (int64_t i = 0; i < s.numel(); ++i) EXPECT_EQ(none[s.offset + i], -1.f);
}

// As `ecmoe calibrate` does: cutoffs from expert choice on the validation windows, then
// threshold routing on the same windows.
TEST_F(Threshold, CalibrationKeepsExpertsPerTokenNearC) {
  const TrainResult r = run(decoder(RouterKind::kExpertChoice, "cal"));
  const Checkpoint ck = Checkpoint::open(r.checkpoint);
  const TrainConfig& config = ck.config();
  const auto val = data::TokenDataset::open(dir / "data", "val");
  const int batches = 6;
  const BatchSource source = BatchSource::fixed(val, batch_spec(config, 4), batches);
  Transformer choice(config.model);
  ModelConfig th = config.model;
  th.moe.router = RouterKind::kExpertThreshold;
  Transformer threshold(th);
  FlatBuffer params(choice.table()), state(choice.state_table());
  ck.load_params(params);
  choice.init_state(state);
  EXPECT_THROW(evaluate(threshold, params, source, batches, &state), Error);  // not calibrated
  choice.update_cutoffs(state, evaluate(choice, params, source, batches, &state).layers, 1.f);
  const EvalResult e = evaluate(threshold, params, source, batches, &state);
  const double c = config.model.moe.capacity_factor_eval;
  for (int l = 0; l < config.model.n_layers; ++l) {
    const double mean = e.layers[l].mean_experts_per_token();
    EXPECT_NEAR(mean, c, 0.1 * c) << "layer " << l;
  }
}

TEST_F(Threshold, TrainsWithThresholdsAfterAnExpertChoiceWarmup) {
  TrainConfig config = decoder(RouterKind::kExpertThreshold, "thr");
  const TrainResult r = run(config);
  ASSERT_TRUE(r.final_eval.has_value());
  EXPECT_TRUE(std::isfinite(r.final_eval->loss));
  const auto lines = train_test::train_lines(dir / "thr/metrics.jsonl");
  ASSERT_EQ(int(lines.size()), config.steps);
  bool varied_after_warmup = false;
  for (const auto& line : lines) {
    for (const auto& layer : line["moe_layers"]) {
      const auto load = layer["tokens_per_expert"].get<std::vector<int64_t>>();
      const bool equal =
          std::adjacent_find(load.begin(), load.end(), std::not_equal_to<>()) == load.end();
      if (line["step"].get<int>() <= 3)
        EXPECT_TRUE(equal) << "expert choice: exactly k each";
      else
        varied_after_warmup |= !equal;
      EXPECT_TRUE(layer.contains("kth_score"));
    }
  }
  EXPECT_TRUE(varied_after_warmup);
  config.model.moe.threshold_warmup_steps = 0;
  config.out = dir / "thr0";
  EXPECT_THROW(run(config), Error);
}

TEST(Cutoffs, FirstUpdateTakesTheTargetThenMovesByTheRate) {
  ModelConfig m;
  m.kind = ModelKind::kDecoder;
  m.vocab_size = 16;
  m.seq_len = 4;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 2;
  m.d_ff = 8;
  m.moe.n_experts = 2;
  const Transformer model(m);  // layer 1 routes by expert choice, layer 0 is dense
  ASSERT_EQ(model.state_table().specs().size(), 1u);
  FlatBuffer state(model.state_table());
  model.init_state(state);
  std::vector<RoutingStats> stats(2);
  stats[1].kth_score_sum = {0.8, 1.2};
  stats[1].kth_score_groups = 2;
  model.update_cutoffs(state, stats, 0.1f);
  const float* c = state.get("layers.1.ffn.router.cutoff");
  EXPECT_FLOAT_EQ(c[0], 0.4f);
  EXPECT_FLOAT_EQ(c[1], 0.6f);
  stats[1].kth_score_sum = {1.6, 0.0};
  model.update_cutoffs(state, stats, 0.1f);
  EXPECT_FLOAT_EQ(c[0], 0.4f + 0.1f * (0.8f - 0.4f));
  EXPECT_FLOAT_EQ(c[1], 0.6f + 0.1f * (0.0f - 0.6f));
}

}  // namespace
