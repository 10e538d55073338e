// A tiny end-to-end fine-tune: a real tokenizer and a tiny encoder pre-trained here, then a
// synthetic but learnable task written here (does the sentence mention the sea?), which the
// fine-tuned classifier must solve clearly better than the majority class. Also: the run is the
// same at any thread count, and the result lands in <out>/result.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "finetune/encode.h"
#include "finetune/finetune.h"
#include "finetune_test_util.h"
#include "train/trainer.h"

namespace ecmoe::finetune {
namespace {

using train_test::TempDir;

using test::sea_task;

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("ft-e2e");
    test::prepare_sample_data(dir_->str());
    checkpoint_ = new std::string(test::pretrain_tiny(dir_->str(), "pretrain"));
  }
  static void TearDownTestSuite() {
    delete checkpoint_;
    delete dir_;
  }
  static FinetuneConfig config() {
    FinetuneConfig c;
    c.checkpoint = *checkpoint_;
    c.task = "sea";
    c.steps = 120;
    c.batch_size = 16;
    c.eval_batch_size = 32;
    c.peak_lr = 3e-3f;
    c.eval_interval = 20;
    c.patience = 0;
    c.seed = 3;
    return c;
  }
  static TempDir* dir_;
  static std::string* checkpoint_;
};
TempDir* EndToEnd::dir_ = nullptr;
std::string* EndToEnd::checkpoint_ = nullptr;

TEST_F(EndToEnd, BeatsTheMajorityClass) {
  const TaskData task = sea_task(1000, 9);
  FinetuneConfig c = config();
  c.pooling = Pooling::kFirst;
  c.out = *dir_ / "ft";
  const FinetuneResult r = run_finetune(c, task, {.progress = nullptr});
  EXPECT_EQ(r.steps, 120);
  EXPECT_EQ(r.history.size(), 6u);
  EXPECT_GT(r.majority_baseline.accuracy, 0.5);
  EXPECT_GT(r.test.accuracy, r.majority_baseline.accuracy + 0.15)
      << "test " << r.test.accuracy << " vs majority " << r.majority_baseline.accuracy;
  EXPECT_GT(r.test.macro_f1, 0.7);
  EXPECT_GE(r.dev.accuracy, r.history.front().dev.accuracy);  // the kept parameters are the best
  const auto saved = nlohmann::json::parse(data::test::read_text(*dir_ / "ft/result.json"));
  EXPECT_DOUBLE_EQ(saved["test"]["accuracy"].get<double>(), r.test.accuracy);
  EXPECT_EQ(saved["steps"].get<int>(), 120);
}

// The count behind finetune's "texts longer than max_len were cut" warning: an example counts
// when it loses tokens to max_len ([CLS] included), a pair losing from its longer side first.
TEST_F(EndToEnd, EncodingCountsTheExamplesCutToMaxLen) {
  const data::Tokenizer tokenizer = data::Tokenizer::load(*dir_ / "data/tokenizer.model");
  const std::string long_text = "the whale and the ship and the sea and the king";
  const std::vector<Example> examples = {
      {"the sea", "", 0}, {long_text, "", 0}, {"sea", long_text, 0}};
  const EncodedSplit e = encode_split(examples, tokenizer, 8);
  EXPECT_EQ(e.tokens[0].size(), tokenizer.encode("the sea").size() + 1);
  EXPECT_EQ(e.tokens[1].size(), 8u);
  ASSERT_EQ(e.tokens[2].size(), 8u);
  const std::vector<int> sea = tokenizer.encode("sea");
  EXPECT_TRUE(std::equal(sea.begin(), sea.end(), e.tokens[2].begin() + 1));  // a kept whole
  EXPECT_EQ(e.tokens[2][1 + sea.size()], data::kSepId);
  EXPECT_EQ(e.truncated, 2);
}

TEST_F(EndToEnd, SameResultAtAnyThreadCountAndMeanPoolingLearns) {
  const TaskData task = sea_task(600, 4);
  FinetuneConfig c = config();
  c.steps = 40;
  c.pooling = Pooling::kMean;
  const int threads = thread_count();
  set_thread_count(1);
  const FinetuneResult one = run_finetune(c, task, {.progress = nullptr});
  set_thread_count(2);
  const FinetuneResult two = run_finetune(c, task, {.progress = nullptr});
  set_thread_count(threads);
  ASSERT_EQ(one.history.size(), two.history.size());
  for (size_t i = 0; i < one.history.size(); ++i) {
    EXPECT_EQ(one.history[i].train_loss, two.history[i].train_loss) << i;
    EXPECT_EQ(one.history[i].dev.accuracy, two.history[i].dev.accuracy) << i;
  }
  EXPECT_EQ(one.test.accuracy, two.test.accuracy);
  EXPECT_GT(one.test.accuracy, one.majority_baseline.accuracy);
}

TEST_F(EndToEnd, EarlyStoppingAndBadConfigs) {
  const TaskData task = sea_task(400, 6);
  FinetuneConfig c = config();
  c.steps = 200;
  c.eval_interval = 1;
  c.patience = 1;
  c.peak_lr = 1e-7f;  // too small to improve dev accuracy: stops at the second evaluation
  const FinetuneResult r = run_finetune(c, task, {.progress = nullptr});
  EXPECT_TRUE(r.stopped_early);
  EXPECT_LT(r.steps, 200);
  EXPECT_EQ(r.best_step, r.history.front().step);

  FinetuneConfig bad = config();
  bad.max_len = 1000;
  EXPECT_THROW(run_finetune(bad, task, {.progress = nullptr}), Error);
  bad = config();
  bad.tokenizer = *dir_ / "in/part0.txt";  // not the checkpoint's tokenizer
  EXPECT_THROW(run_finetune(bad, task, {.progress = nullptr}), Error);
  TaskData empty = task;
  empty.dev.clear();
  EXPECT_THROW(run_finetune(config(), empty, {.progress = nullptr}), Error);
}

TEST(FinetuneConfigJson, RoundTripsAndRejectsUnknownKeys) {
  FinetuneConfig c;
  c.task = "spam";
  c.pooling = Pooling::kMean;
  c.peak_lr = 3e-4f;
  const ConfigJson j = finetune_config_to_json(c);
  EXPECT_EQ(j["peak_lr"].dump(), "0.0003");
  const FinetuneConfig back = finetune_config_from_json(j);
  EXPECT_EQ(finetune_config_to_json(back), j);
  ConfigJson bad = j;
  bad["learning_rate"] = 1;
  EXPECT_THROW(finetune_config_from_json(bad), Error);
  bad = j;
  bad["steps"] = "many";
  EXPECT_THROW(finetune_config_from_json(bad), Error);
}

}  // namespace
}  // namespace ecmoe::finetune
