// Training on the GPU through train() (train/train_device.h with the CUDA backends, what
// `ecmoe train --device cuda` runs), on a data folder the test writes: 20 fp32 steps against the
// same 20 on the CPU (every step's loss within 1e-4 relative), gradient accumulation, a GPU run
// resumed on the GPU bit-identical to one never stopped, and a GPU checkpoint continued on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#if ECMOE_CUDA_EMULATED
#include <cuda_runtime.h>  // cudaemu::blocking_host_waits
#endif

#include "cli/train_device.h"
#include "cuda_test_util.h"
#include "model/model_config.h"
#include "moe/moe_config.h"
#include "train/train_device.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

namespace ecmoe::cuda::testing {
namespace {

using train_test::TempDir;

// The device `--device cuda` trains on (cli/train_device.h), not a second assembly of it.
const TrainDevice& gpu() { return *cli::train_device("cuda"); }

TrainResult run(const TrainConfig& config, const TrainDevice* device, bool resume = false) {
  return train_test::train_quietly(config, resume, device);
}

class CudaTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    ECMOE_REQUIRE_GPU();
    train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  }
  TrainConfig tiny(const std::string& out, const char* router, ModelKind kind) {
    TrainConfig c = train_test::tiny_config(dir / "data", dir / out);
    c.model.kind = kind;
    c.model.moe = default_moe_config(parse_router_kind(router));
    c.model.moe.n_experts = 4;
    c.model.init_std = 0.1f;  // router scores apart: no routing flips between the devices
    c.steps = 20;
    c.eval.interval = 10;
    c.checkpoint_interval = 10;
    return c;
  }
  TempDir dir{"cuda-training"};
};

TEST_F(CudaTraining, TwentyStepsMatchTheCpu) {
  for (const auto& [router, kind] :
       {std::pair{"expert_choice", ModelKind::kEncoder}, std::pair{"top2", ModelKind::kDecoder}}) {
    SCOPED_TRACE(router);
    const TrainConfig on_cpu = tiny(std::string("cpu-") + router, router, kind);
    TrainConfig on_gpu = on_cpu;
    on_gpu.out = dir / (std::string("gpu-") + router);
    const TrainResult a = run(on_cpu, nullptr);
    const TrainResult b = run(on_gpu, &gpu());
    const auto la = train_test::train_lines(on_cpu.out + "/metrics.jsonl");
    const auto lb = train_test::train_lines(on_gpu.out + "/metrics.jsonl");
    ASSERT_EQ(la.size(), 20u);
    ASSERT_EQ(lb.size(), 20u);
    for (std::size_t i = 0; i < la.size(); ++i) {
      const double x = la[i]["loss"].get<double>(), y = lb[i]["loss"].get<double>();
      EXPECT_NEAR(y, x, 1e-4 * std::fabs(x)) << "step " << i + 1;
    }
    ASSERT_TRUE(a.final_eval && b.final_eval);
    EXPECT_NEAR(b.final_eval->loss, a.final_eval->loss, 1e-4 * a.final_eval->loss);
  }
}

// Gradient accumulation on the GPU (config grad_accum): two micro-batches a step, the second's
// expert gradients added to the first's (cuda/lazy_zero_grads.h: a range's second claim in a step
// adds), against the same on the CPU and against the GPU's run without micro-batches (routing
// groups of one sequence, so both route alike).
TEST_F(CudaTraining, MicroBatchesMatchTheCpuAndTheWholeBatch) {
  TrainConfig on_cpu = tiny("accum-cpu", "expert_choice", ModelKind::kEncoder);
  on_cpu.steps = 6;
  on_cpu.model.moe.group_size = on_cpu.model.seq_len;
  on_cpu.eval.batch_size = on_cpu.batch_size;
  on_cpu.grad_accum = 2;
  TrainConfig on_gpu = on_cpu, whole = on_cpu;
  on_gpu.out = dir / "accum-gpu";
  whole.out = dir / "accum-gpu-whole";
  whole.grad_accum = 1;
  run(on_cpu, nullptr);
  run(on_gpu, &gpu());
  run(whole, &gpu());
  const auto la = train_test::train_lines(on_cpu.out + "/metrics.jsonl");
  const auto lb = train_test::train_lines(on_gpu.out + "/metrics.jsonl");
  const auto lw = train_test::train_lines(whole.out + "/metrics.jsonl");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  ASSERT_EQ(lw.size(), 6u);
  for (std::size_t i = 0; i < la.size(); ++i) {
    const double x = la[i]["loss"].get<double>(), y = lb[i]["loss"].get<double>();
    const double w = lw[i]["loss"].get<double>();
    EXPECT_NEAR(y, x, 1e-4 * std::fabs(x)) << "step " << i + 1;
    EXPECT_NEAR(y, w, 1e-4 * std::fabs(w)) << "step " << i + 1;
    EXPECT_EQ(lb[i]["targets"], lw[i]["targets"]) << "step " << i + 1;
  }
}

#if ECMOE_CUDA_EMULATED
// A training step makes the host wait for the device once, at the gradient norm (forward,
// backward and the norm are all queued first; the loss and the layers' values come back with
// it), plus once per token-choice layer, whose expert counts size its expert GEMMs on the host.
// Emulation only: cudaemu counts the waits that found work queued, where a GPU could still have
// been busy. The difference between runs of 4 and 8 steps leaves out the setup, the final
// evaluation and the checkpoint; a run before them lets the buffers grow (a growth frees memory,
// which waits).
TEST_F(CudaTraining, AStepWaitsForTheDeviceOncePlusOncePerTokenChoiceLayer) {
  for (const auto& [router, kind] :
       {std::pair{"expert_choice", ModelKind::kEncoder}, std::pair{"top2", ModelKind::kDecoder}}) {
    SCOPED_TRACE(router);
    int runs = 0;
    const auto config = [&](int steps) {
      TrainConfig c = tiny(std::string("waits-") + router + std::to_string(runs++), router, kind);
      c.steps = steps;
      return c;
    };
    const auto waits = [&](int steps) {
      const TrainConfig c = config(steps);
      const unsigned long long before = ::cudaemu::blocking_host_waits();
      run(c, &gpu());
      return ::cudaemu::blocking_host_waits() - before;
    };
    const ModelConfig model = config(1).model;
    unsigned long long per_step = 1;
    if (router_is_token_choice(model.moe.router))
      for (int l = 0; l < model.n_layers; ++l) per_step += model.is_moe_layer(l) ? 1 : 0;
    waits(8);  // the backend's scratch (kept from run to run) grows to this model's sizes
    const unsigned long long four = waits(4), eight = waits(8);
    EXPECT_EQ(eight - four, 4 * per_step) << four << " waits in 4 steps, " << eight << " in 8";
  }
}
#endif

TEST_F(CudaTraining, ResumeOnTheGpuIsBitwise) {
  const TrainConfig straight = tiny("straight", "expert_choice", ModelKind::kEncoder);
  run(straight, &gpu());
  TrainConfig first = straight;
  first.out = dir / "resumed";
  first.steps = 10;
  run(first, &gpu());
  TrainConfig second = first;
  second.steps = 20;
  run(second, &gpu(), /*resume=*/true);
  const auto la = train_test::train_lines(straight.out + "/metrics.jsonl");
  const auto lb = train_test::train_lines(second.out + "/metrics.jsonl");
  ASSERT_EQ(la.size(), lb.size());
  for (std::size_t i = 0; i < la.size(); ++i)
    EXPECT_EQ(la[i]["loss"].get<double>(), lb[i]["loss"].get<double>()) << "step " << i + 1;
  train_test::expect_same_checkpoints(straight.out, second.out);
}

TEST_F(CudaTraining, AGpuCheckpointContinuesOnTheCpu) {
  const TrainConfig whole = tiny("whole-cpu", "top1", ModelKind::kEncoder);
  const TrainResult cpu = run(whole, nullptr);
  TrainConfig first = whole;
  first.out = dir / "gpu-then-cpu";
  first.steps = 10;
  run(first, &gpu());
  TrainConfig second = first;
  second.steps = 20;
  const TrainResult mixed = run(second, nullptr, /*resume=*/true);
  ASSERT_TRUE(cpu.final_eval && mixed.final_eval);
  EXPECT_NEAR(mixed.final_eval->loss, cpu.final_eval->loss, 1e-4 * cpu.final_eval->loss);
}

}  // namespace
}  // namespace ecmoe::cuda::testing
