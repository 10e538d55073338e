// Fine-tuning's device path (FinetuneOptions::device: the encoder's parameters, gradients and
// AdamW state in an OptimizerDevice, its ops behind the model's backends, the head on the host) on
// the host device (host_train_device()): bitwise the plain run's losses, dev history, kept
// parameters, saved model and predictions, for expert choice and top-2 (auxiliary loss), both
// poolings, with and without clipping. The GPU's device plugs into the same path (`finetune
// --device cuda`, tests/cuda/test_cuda_finetune.cpp). Also: predict on a device, and a run too
// large for the device's memory refused before it starts.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "finetune/finetune.h"
#include "finetune/predict.h"
#include "finetune/saved_model.h"
#include "finetune_test_util.h"
#include "io/safetensors.h"
#include "train/train_device.h"

namespace ecmoe::finetune {
namespace {

using train_test::TempDir;

class FinetuneDevicePath : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("ft-device");
    test::prepare_sample_data(dir_->str());
    checkpoints_ = new std::vector<std::string>{
        test::pretrain_tiny(dir_->str(), "ec", RouterKind::kExpertChoice),
        test::pretrain_tiny(dir_->str(), "top2", RouterKind::kTop2)};
  }
  static void TearDownTestSuite() {
    delete checkpoints_;
    delete dir_;
  }
  static FinetuneConfig config(const std::string& checkpoint, const std::string& out) {
    FinetuneConfig c;
    c.checkpoint = checkpoint;
    c.task = "sea";
    c.steps = 24;
    c.batch_size = 16;
    c.eval_batch_size = 32;
    c.peak_lr = 3e-3f;
    c.eval_interval = 4;
    c.patience = 2;
    c.seed = 5;
    c.out = *dir_ / out;
    return c;
  }
  static TempDir* dir_;
  static std::vector<std::string>* checkpoints_;
};
TempDir* FinetuneDevicePath::dir_ = nullptr;
std::vector<std::string>* FinetuneDevicePath::checkpoints_ = nullptr;

void expect_same_metrics(const ClassMetrics& a, const ClassMetrics& b) {
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_EQ(a.macro_f1, b.macro_f1);
  EXPECT_EQ(a.confusion, b.confusion);
}

TEST_F(FinetuneDevicePath, TheHostDeviceFineTunesBitwiseAsThePlainRun) {
  // The host device with its memory told apart: no host pointer reaches a dense op either.
  ecmoe::testing::CheckedBackend be;
  const TrainDevice device = train_test::checked_train_device(be);
  const TaskData task = test::sea_task(500, 7);
  int run = 0;
  for (const std::string& checkpoint : *checkpoints_)
    for (const Pooling pooling : {Pooling::kMean, Pooling::kFirst}) {
      SCOPED_TRACE(checkpoint + " " + pooling_name(pooling));
      const std::string name = std::to_string(run++);
      FinetuneConfig plain = config(checkpoint, "plain-" + name);
      plain.pooling = pooling;
      if (pooling == Pooling::kFirst) plain.clip_norm = 0.05f;  // every step clipped
      FinetuneConfig on_device = plain;
      on_device.out = *dir_ / ("device-" + name);
      const FinetuneResult a = run_finetune(plain, task, test::quiet());
      const FinetuneResult b = run_finetune(on_device, task, test::quiet(&device));
      EXPECT_EQ(a.device, "cpu");
      EXPECT_EQ(b.device, "checked");
      ASSERT_EQ(a.history.size(), b.history.size());
      for (std::size_t i = 0; i < a.history.size(); ++i) {
        EXPECT_EQ(a.history[i].step, b.history[i].step);
        EXPECT_EQ(a.history[i].train_loss, b.history[i].train_loss) << "evaluation " << i;
        expect_same_metrics(a.history[i].dev, b.history[i].dev);
      }
      EXPECT_EQ(a.steps, b.steps);
      EXPECT_EQ(a.best_step, b.best_step);
      expect_same_metrics(a.dev, b.dev);
      expect_same_metrics(a.test, b.test);
      test::expect_same_models(a.model_file, b.model_file);
      EXPECT_EQ(train_test::read_text(plain.out + "/predictions.tsv"),
                train_test::read_text(on_device.out + "/predictions.tsv"));
    }
}

TEST_F(FinetuneDevicePath, PredictOnTheHostDeviceIsThePlainPredict) {
  ecmoe::testing::CheckedBackend be;
  const TrainDevice device = train_test::checked_train_device(be);
  const TaskData task = test::sea_task(300, 8);
  const FinetuneConfig c = config(checkpoints_->front(), "for-predict");
  const FinetuneResult r = run_finetune(c, task, test::quiet());
  const SavedClassifier saved = SavedClassifier::open(r.model_file);
  Predictor plain(saved, ""), on_device(saved, "", &device);
  const EncodedSplit split = plain.encode(task.test);
  const Classified a = plain.classify(split, 32), b = on_device.classify(split, 32);
  EXPECT_EQ(a.predicted, b.predicted);
  ASSERT_EQ(a.probabilities.size(), b.probabilities.size());
  EXPECT_EQ(std::memcmp(a.probabilities.data(), b.probabilities.data(),
                        a.probabilities.size() * sizeof(float)),
            0);
}

TEST_F(FinetuneDevicePath, ARunThatDoesNotFitTheDeviceIsRefusedBeforeItStarts) {
  TrainDevice small = host_train_device();
  small.free_memory = [] { return 1e4; };  // a device with 10 kB free
  const FinetuneConfig c = config(checkpoints_->front(), "too-big");
  std::string error;
  try {
    run_finetune(c, test::sea_task(300, 9), test::quiet(&small));
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("of host memory ("), std::string::npos) << error;
  EXPECT_NE(error.find("more than the 10 kB available"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(c.out + "/result.json"));
}

}  // namespace
}  // namespace ecmoe::finetune
