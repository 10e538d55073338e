// Gradient accumulation (config grad_accum; train/data_parallel.h): a step's batch cut into
// micro-batches whose gradients add up to the whole batch's. With routing groups that do not
// span micro-batches (model.moe.group_size dividing a micro-batch), every router routes alike,
// and the step's loss and gradient equal the whole batch's to float tolerance, also for a masked
// LM whose micro-batches count different numbers of targets: each part's cross-entropy is divided
// by the step's count, its auxiliary losses by the number of parts. Training with micro-batches
// then follows the run without them; its memory estimate is a micro-batch's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "core/error.h"
#include "dist/comm.h"
#include "train/data_parallel.h"
#include "train/memory_estimate.h"
#include "train/train_config.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

TEST(StepParts, CutTheBatchIntoEqualPartsWithTheirShareOfTheStep) {
  const ModelConfig c = ecmoe::testing::tiny_config(ModelKind::kEncoder, RouterKind::kExpertChoice);
  Batch step = ecmoe::testing::random_batch(c, 6, 5, 11);
  step.valid_len = {5, 4, 3, 5, 2, 1};
  const int64_t counted =
      std::count_if(step.targets.begin(), step.targets.end(), [](int32_t t) { return t >= 0; });
  const dist::Comm single = dist::Comm::single();
  const std::vector<Batch> parts = step_parts(step, single, 3);
  ASSERT_EQ(parts.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const Batch& p = parts[size_t(i)];
    EXPECT_EQ(p.batch_size, 2);
    EXPECT_EQ(p.seq_len, 5);
    EXPECT_EQ(p.share.first_token, i * 10);
    EXPECT_EQ(p.share.step_counted, counted);
    EXPECT_EQ(p.share.parts, 3);
    EXPECT_TRUE(std::equal(p.tokens.begin(), p.tokens.end(), step.tokens.begin() + i * 10));
    EXPECT_TRUE(std::equal(p.targets.begin(), p.targets.end(), step.targets.begin() + i * 10));
    EXPECT_EQ(p.valid_len, std::vector<int32_t>(step.valid_len.begin() + 2 * i,
                                                step.valid_len.begin() + 2 * i + 2));
  }
  // One part is the step itself, its share the default.
  const std::vector<Batch> whole = step_parts(step, single, 1);
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].tokens, step.tokens);
  EXPECT_EQ(whole[0].share.parts, 1);
  EXPECT_EQ(whole[0].share.step_counted, 0);
  try {
    step_parts(step, single, 4);
    FAIL() << "6 sequences cut into 4 parts";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be divisible by grad_accum (4)"), std::string::npos)
        << e.what();
  }
}

// The whole batch against the sum of its parts' gradients, for every router.
class PartsAddUp : public ::testing::TestWithParam<RouterKind> {};

TEST_P(PartsAddUp, ToTheWholeBatchsLossAndGradient) {
  const int T = 10, B = 8;
  ModelConfig c = ecmoe::testing::tiny_config(ModelKind::kEncoder, GetParam());
  c.moe.group_size = 2 * T;  // two sequences a group: every part below routes as the whole
  c.moe.jitter = 0.1f;       // drawn by the token's place in the step
  c.moe.load_balance_weight = 0.01f;
  c.moe.z_loss_weight = 1e-3f;
  const Batch step = ecmoe::testing::random_batch(c, B, T, 5);

  Transformer model(c);
  FlatBuffer params(model.table()), whole(model.table()), summed(model.table());
  model.init_params(params, 3);
  FlatBuffer state(model.state_table());
  model.init_state(state);
  for (const auto& spec : model.state_table().specs())
    for (float& cutoff : state.view(spec.name)) cutoff = 1.1f / float(c.moe.n_experts);
  whole.zero();
  const ForwardResult f_whole = model.forward(params, state, step, true, 7);
  model.backward(params, whole);
  const std::vector<RoutingStats> stats_whole = f_whole.layer_stats;

  for (const int micro : {2, 4}) {
    summed.zero();
    std::vector<ForwardResult> results;
    std::vector<int64_t> counts;
    for (const Batch& part : step_parts(step, dist::Comm::single(), micro)) {
      results.push_back(model.forward(params, state, part, true, 7));
      model.backward(params, summed);
      counts.push_back(results.back().counted);
    }
    // The parts count different numbers of targets: a mean of their means would be off.
    EXPECT_NE(*std::min_element(counts.begin(), counts.end()),
              *std::max_element(counts.begin(), counts.end()));
    const ForwardResult f = combine_parts(results);
    EXPECT_EQ(f.counted, f_whole.counted);
    EXPECT_NEAR(f.lm_loss, f_whole.lm_loss, 1e-12 * f_whole.lm_loss) << micro;
    EXPECT_NEAR(f.aux.load_balance, f_whole.aux.load_balance, 1e-5 * f_whole.aux.load_balance);
    EXPECT_NEAR(f.aux.z_loss, f_whole.aux.z_loss, 1e-5 * f_whole.aux.z_loss);
    EXPECT_NEAR(f.loss, f_whole.loss, 1e-6 * f_whole.loss) << micro;
    for (size_t l = 0; l < stats_whole.size(); ++l)
      EXPECT_EQ(f.layer_stats[l].tokens_per_expert, stats_whole[l].tokens_per_expert)
          << "layer " << l << " routed differently in " << micro << " parts";
    double scale = 0;
    for (int64_t i = 0; i < whole.table().total_floats(); ++i)
      scale = std::max(scale, double(std::abs(whole.data()[i])));
    ASSERT_GT(scale, 0);
    for (const auto& spec : model.table().specs()) {
      const float* a = whole.get(spec.name);
      const float* b = summed.get(spec.name);
      for (int64_t i = 0; i < spec.numel(); ++i)
        ASSERT_NEAR(b[i], a[i], 2e-6 * scale) << spec.name << "[" << i << "], " << micro;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Routers, PartsAddUp,
                         ::testing::Values(RouterKind::kExpertChoice,
                                           RouterKind::kExpertChoiceCapped, RouterKind::kTop1,
                                           RouterKind::kTop2, RouterKind::kDense, RouterKind::kHash,
                                           RouterKind::kExpertThreshold),
                         [](const auto& info) { return router_name(info.param); });

class GradAccumTraining : public ::testing::Test {
 protected:
  void SetUp() override { train_test::write_data_folder(dir / "data", 64, 20000, 3000); }
  TrainConfig tiny(const std::string& out) {
    TrainConfig c = train_test::tiny_config(dir / "data", dir / out);
    c.model.moe.group_size = c.model.seq_len;  // groups of one sequence: any micro-batch routes so
    c.eval.batch_size = 4;                     // the same evaluation batches in every run
    return c;
  }
  TempDir dir{"grad-accum"};
};

// A run with 2 and 4 micro-batches a step follows the run without them (losses within float
// tolerance at every step, the same targets), on the host and through the trainer's device path.
TEST_F(GradAccumTraining, FollowsTheRunWithoutMicroBatches) {
  const TrainConfig base = tiny("whole");
  train_test::train_quietly(base);
  const auto expected = train_test::train_lines(base.out + "/metrics.jsonl");
  ASSERT_EQ(expected.size(), size_t(base.steps));
  ecmoe::testing::CheckedBackend be;
  const TrainDevice device = train_test::checked_train_device(be);
  for (const int micro : {2, 4})
    for (const TrainDevice* on : {static_cast<const TrainDevice*>(nullptr), &device}) {
      TrainConfig c = tiny("micro" + std::to_string(micro) + (on ? "-device" : ""));
      c.grad_accum = micro;
      train_test::train_quietly(c, false, on);
      const auto lines = train_test::train_lines(c.out + "/metrics.jsonl");
      ASSERT_EQ(lines.size(), expected.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        const std::string where =
            "step " + std::to_string(i + 1) + ", " + std::to_string(micro) + " micro-batches";
        EXPECT_EQ(lines[i]["targets"], expected[i]["targets"]) << where;
        const double loss = lines[i]["loss"], want = expected[i]["loss"];
        EXPECT_NEAR(loss, want, 1e-5 * want) << where;
        const double norm = lines[i]["grad_norm"], want_norm = expected[i]["grad_norm"];
        EXPECT_NEAR(norm, want_norm, 1e-4 * want_norm) << where;
      }
    }
}

// grad_accum may change when a run resumes (a machine with less memory), and the checkpoint
// records it; a batch it does not divide is refused before training.
TEST_F(GradAccumTraining, ResumesWithAnotherCountAndRefusesAnUnevenCut) {
  TrainConfig c = tiny("resumed");
  c.steps = 2;
  train_test::train_quietly(c);
  c.steps = 4;
  c.grad_accum = 2;
  EXPECT_EQ(train_test::train_quietly(c, /*resume=*/true).last_step, 4);
  const auto lines = train_test::train_lines(c.out + "/metrics.jsonl");
  EXPECT_EQ(lines.size(), 4u);
  c.grad_accum = 3;
  try {
    c.validate();
    FAIL() << "batch_size 4 cut into 3";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "batch_size (4) must be divisible by grad_accum (3): each micro-batch takes an "
              "equal part");
  }
}

// A micro-batch's activations are what the estimate counts, and a batch that does not fit names
// the grad_accum that would.
TEST(GradAccumMemory, EstimatesAMicroBatchAndSuggestsTheCountThatFits) {
  TrainConfig c;
  c.model.vocab_size = 8000;
  c.batch_size = 64;
  c.eval.batches = 0;
  const MemoryEstimate whole = estimate_memory(c, true, /*on_device=*/true);
  c.grad_accum = 4;
  const MemoryEstimate quarter = estimate_memory(c, true, /*on_device=*/true);
  EXPECT_EQ(quarter.parameters, whole.parameters);
  EXPECT_EQ(quarter.optimizer, whole.optimizer);
  EXPECT_NEAR(quarter.activations, whole.activations / 4, 0.01 * whole.activations);
  c.grad_accum = 1;
  // Room for the training state and a little over half the batch's activations.
  const double room = whole.parameters + whole.gradients + whole.optimizer +
                      0.55 * (whole.activations + whole.device_scratch);
  const DeviceMemory device{room, "test memory"};
  try {
    check_memory(c, true, {}, &device);
    FAIL() << "no refusal";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("or keep the batch with grad_accum=2 (micro-batches of 32 sequences)"),
              std::string::npos)
        << what;
  }
}

}  // namespace
