// Fine-tuning on the GPU through run_finetune (FinetuneOptions::device with the CUDA backends, what
// `ecmoe finetune --device cuda` runs) against the same run on the CPU: a tiny encoder pre-trained
// here fine-tuned 8 fp32 steps, every step's loss within 1e-4 relative (expert choice with mean
// pooling, top-2 with first pooling and every step clipped); a GPU run repeated gives the same
// bits; `predict` on the GPU gives the CPU's probabilities within 1e-4. Also the joint clipping of
// the encoder's gradients on the GPU and the head's on the host: the CPU's bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cli/train_device.h"
#include "cuda_test_util.h"
#include "finetune/finetune.h"
#include "finetune/finetune_test_util.h"
#include "finetune/predict.h"
#include "finetune/saved_model.h"
#include "io/safetensors.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"
#include "train/train_device.h"

namespace ecmoe::cuda::testing {
namespace {

using train_test::TempDir;

// The device `--device cuda` fine-tunes on (cli/train_device.h).
const TrainDevice& gpu() { return *cli::train_device("cuda"); }

// A data folder and two tiny encoders (expert choice, top-2), made once for the file.
struct Pretrained {
  TempDir dir{"cuda-finetune"};
  std::string ec, top2;
  Pretrained() {
    finetune::test::prepare_sample_data(dir.str());
    // init_std 0.1: router scores apart, so no routing decision flips between the devices.
    ec = finetune::test::pretrain_tiny(dir.str(), "ec", RouterKind::kExpertChoice, 0.1f);
    top2 = finetune::test::pretrain_tiny(dir.str(), "top2", RouterKind::kTop2, 0.1f);
  }
};
const Pretrained& pretrained() {
  static const Pretrained p;
  return p;
}

finetune::FinetuneConfig config(const std::string& checkpoint, const std::string& out) {
  finetune::FinetuneConfig c;
  c.checkpoint = checkpoint;
  c.task = "sea";
  c.steps = 8;
  c.batch_size = 16;
  c.eval_batch_size = 32;
  c.peak_lr = 3e-3f;
  c.eval_interval = 1;  // history[i].train_loss is step i + 1's loss
  c.patience = 0;
  c.seed = 5;
  c.precision = Precision::kFp32;
  c.out = pretrained().dir / out;
  return c;
}

TEST(CudaFinetune, EightStepsMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  const finetune::TaskData task = finetune::test::sea_task(400, 7);
  for (const auto& [checkpoint, pooling] :
       {std::pair{pretrained().ec, finetune::Pooling::kMean},
        std::pair{pretrained().top2, finetune::Pooling::kFirst}}) {
    SCOPED_TRACE(checkpoint);
    finetune::FinetuneConfig on_cpu = config(checkpoint, "cpu-" + finetune::pooling_name(pooling));
    on_cpu.pooling = pooling;
    if (pooling == finetune::Pooling::kFirst) on_cpu.clip_norm = 0.05f;
    finetune::FinetuneConfig on_gpu = on_cpu;
    on_gpu.out = pretrained().dir / ("gpu-" + finetune::pooling_name(pooling));
    const finetune::FinetuneResult a =
        finetune::run_finetune(on_cpu, task, finetune::test::quiet());
    const finetune::FinetuneResult b =
        finetune::run_finetune(on_gpu, task, finetune::test::quiet(&gpu()));
    EXPECT_EQ(b.device, "cuda");
    ASSERT_EQ(a.history.size(), 8u);
    ASSERT_EQ(b.history.size(), 8u);
    for (std::size_t i = 0; i < a.history.size(); ++i) {
      const double x = a.history[i].train_loss, y = b.history[i].train_loss;
      EXPECT_NEAR(y, x, 1e-4 * std::fabs(x)) << "step " << i + 1;
    }
    EXPECT_FALSE(b.model_file.empty());
  }
}

TEST(CudaFinetune, AGpuRunRepeatsBitwise) {
  ECMOE_REQUIRE_GPU();
  const finetune::TaskData task = finetune::test::sea_task(400, 7);
  const finetune::FinetuneResult a = finetune::run_finetune(config(pretrained().ec, "repeat-a"),
                                                            task, finetune::test::quiet(&gpu()));
  const finetune::FinetuneResult b = finetune::run_finetune(config(pretrained().ec, "repeat-b"),
                                                            task, finetune::test::quiet(&gpu()));
  ASSERT_EQ(a.history.size(), b.history.size());
  for (std::size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].train_loss, b.history[i].train_loss) << "step " << i + 1;
    EXPECT_EQ(a.history[i].dev.accuracy, b.history[i].dev.accuracy) << "step " << i + 1;
  }
  finetune::test::expect_same_models(a.model_file, b.model_file);
}

TEST(CudaFinetune, PredictOnTheGpuMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  const finetune::TaskData task = finetune::test::sea_task(400, 8);
  const finetune::FinetuneResult r =
      finetune::run_finetune(config(pretrained().ec, "for-predict"), task, finetune::test::quiet());
  const finetune::SavedClassifier saved = finetune::SavedClassifier::open(r.model_file);
  finetune::Predictor on_cpu(saved, ""), on_gpu(saved, "", &gpu());
  const finetune::EncodedSplit split = on_cpu.encode(task.test);
  const finetune::Classified a = on_cpu.classify(split, 32), b = on_gpu.classify(split, 32);
  EXPECT_TRUE(close(b.probabilities, a.probabilities, 1e-4));
}

// optim/optimizer_device.h's clip_grad_norm with the encoder's gradients in the CUDA optimizer
// device and the head's on the host: the norm and every scaled gradient as clip_grad_norm over
// host copies of both; clipped, measured only, left alone, and a NaN in the head.
TEST(CudaFinetune, TheJointClippingIsTheCpusBitwise) {
  ECMOE_REQUIRE_GPU();
  TensorTable enc_table, head_table;
  enc_table.add("a", {333, 101});
  enc_table.add("b", {2, 20000});
  head_table.add("w", {16, 3});
  head_table.add("b", {3});
  for (const float max_norm : {0.5f, 0.f, 1e30f, -1.f}) {
    SCOPED_TRACE(max_norm);
    FlatBuffer enc(enc_table), head(head_table);
    const std::vector<float> e = random_normal(std::size_t(enc.size()), 91, 0.01f);
    const std::vector<float> h = random_normal(std::size_t(head.size()), 92, 0.5f);
    std::memcpy(enc.data(), e.data(), e.size() * sizeof(float));
    std::memcpy(head.data(), h.data(), h.size() * sizeof(float));
    if (max_norm < 0) head.get("w")[4] = std::numeric_limits<float>::quiet_NaN();
    const auto device = gpu().optimizer(enc_table, AdamWConfig{});
    device->load(FlatBuffer(enc_table), AdamW(enc_table));
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(device->grads(), enc.data(),
                                     std::size_t(enc.size()) * sizeof(float),
                                     cudaMemcpyHostToDevice, stream()));
    context().synchronize();
    FlatBuffer head_on_host = head;
    FlatBuffer* const both[] = {&enc, &head};
    const float want = clip_grad_norm(both, max_norm);
    FlatBuffer* const host[] = {&head_on_host};
    const float got = clip_grad_norm(*device, host, max_norm);
    EXPECT_EQ(std::memcmp(&got, &want, sizeof(float)), 0) << got << " vs " << want;
    FlatBuffer enc_back(enc_table);
    device->store_grads(enc_back);
    EXPECT_EQ(std::memcmp(enc_back.data(), enc.data(), std::size_t(enc.size()) * sizeof(float)), 0);
    EXPECT_EQ(
        std::memcmp(head_on_host.data(), head.data(), std::size_t(head.size()) * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace ecmoe::cuda::testing
