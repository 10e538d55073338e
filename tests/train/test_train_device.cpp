// The trainer's device path (train/train_device.h) on the host device: the same steps through
// forward_on_backend, the nn backend and the OptimizerDevice give bitwise the plain trainer's
// metrics, evaluations and checkpoints, for every router, and a run resumes across the two
// (a device checkpoint continues on the host and the other way round). The GPU's device plugs
// into the same path (`train --device cuda`).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/token_dataset.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "nn/buffer.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/train_device.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

constexpr int kVocab = 64;

class TrainDevicePath : public ::testing::Test {
 protected:
  void SetUp() override { train_test::write_data_folder(dir / "data", kVocab, 20000, 3000); }

  TrainResult run(const TrainConfig& config, const TrainDevice* device, bool resume = false) {
    return train_test::train_quietly(config, resume, device);
  }

  TrainConfig tiny(const std::string& out, const char* router) {
    TrainConfig c = train_test::tiny_config(dir / "data", dir / out);
    c.model.moe = default_moe_config(parse_router_kind(router));
    c.model.moe.n_experts = 4;
    c.eval.interval = 3;
    c.eval.batches = 2;
    c.checkpoint_interval = 3;
    return c;
  }

  TempDir dir{"train-device"};
};

using train_test::expect_same_checkpoints;

void expect_same_training(const std::string& a, const std::string& b, std::size_t steps) {
  const auto la = train_test::train_lines(a + "/metrics.jsonl");
  const auto lb = train_test::train_lines(b + "/metrics.jsonl");
  ASSERT_EQ(la.size(), steps);
  ASSERT_EQ(lb.size(), steps);
  for (std::size_t i = 0; i < la.size(); ++i) {
    EXPECT_EQ(la[i]["loss"].get<double>(), lb[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(la[i]["grad_norm"].get<double>(), lb[i]["grad_norm"].get<double>());
    EXPECT_EQ(la[i]["moe_layers"], lb[i]["moe_layers"]);
  }
}

}  // namespace

// What a GPU would crash on, found on the CPU: no host pointer reaches a dense op of the device
// path (training, evaluation, threshold cutoffs, checkpoints), for every kind of router.
TEST_F(TrainDevicePath, TheDevicePathGivesTheDeviceOnlyDeviceMemory) {
  {  // the checker itself
    ecmoe::testing::CheckedBackend be;
    float host[4] = {};
    EXPECT_THROW(be.fill(host, 4, 1.f), std::logic_error);
    float* on_device = static_cast<float*>(be.allocate(4 * sizeof(float)));
    EXPECT_NO_THROW(be.fill(on_device + 1, 3, 1.f));
    EXPECT_NO_THROW(be.upload(on_device, host, sizeof host));
    EXPECT_THROW(be.upload(host, on_device, sizeof host), std::logic_error);
    EXPECT_THROW(be.download(on_device, on_device, sizeof host), std::logic_error);
    be.release(on_device);
    EXPECT_THROW(be.fill(on_device, 4, 1.f), std::logic_error);  // released: not the device's
  }
  for (const char* router : {"expert_choice", "top2", "expert_threshold", "hash"}) {
    SCOPED_TRACE(router);
    ecmoe::testing::CheckedBackend be;
    const TrainDevice device = train_test::checked_train_device(be);
    TrainConfig plain = tiny(std::string("plain-checked-") + router, router);
    plain.model.kind = ModelKind::kDecoder;
    if (plain.model.moe.router == RouterKind::kExpertThreshold)
      plain.model.moe.threshold_warmup_steps = 2;
    TrainConfig checked = plain;
    checked.out = dir / (std::string("checked-") + router);
    run(plain, nullptr);
    run(checked, &device);
    EXPECT_GT(be.checks, 1000);
    expect_same_training(plain.out, checked.out, std::size_t(plain.steps));
    expect_same_checkpoints(plain.out, checked.out);
  }
}

TEST_F(TrainDevicePath, TheHostDeviceTrainsBitwiseAsThePlainTrainer) {
  const TrainDevice device = host_train_device();
  for (const char* router : {"expert_choice", "top2", "expert_threshold", "dense"}) {
    SCOPED_TRACE(router);
    TrainConfig plain = tiny(std::string("plain-") + router, router);
    if (plain.model.moe.router == RouterKind::kExpertThreshold)
      plain.model.moe.threshold_warmup_steps = 2;
    TrainConfig on_device = plain;
    on_device.out = dir / (std::string("device-") + router);
    const TrainResult a = run(plain, nullptr);
    const TrainResult b = run(on_device, &device);
    ASSERT_TRUE(a.final_eval && b.final_eval);
    EXPECT_EQ(a.final_eval->loss, b.final_eval->loss);
    expect_same_training(plain.out, on_device.out, std::size_t(plain.steps));
    expect_same_checkpoints(plain.out, on_device.out);
  }
}

TEST_F(TrainDevicePath, RunsResumeAcrossTheHostAndTheDevice) {
  const TrainDevice device = host_train_device();
  TrainConfig straight = tiny("straight", "top1");
  run(straight, nullptr);
  // The first half on the device, the second on the host; and the other way round.
  for (const bool device_first : {true, false}) {
    TrainConfig first = straight;
    first.out = dir / (device_first ? "device-then-host" : "host-then-device");
    first.steps = straight.steps / 2;
    run(first, device_first ? &device : nullptr);
    TrainConfig second = first;
    second.steps = straight.steps;
    const TrainResult r = run(second, device_first ? nullptr : &device, /*resume=*/true);
    EXPECT_EQ(r.last_step, straight.steps);
    expect_same_training(straight.out, second.out, std::size_t(straight.steps));
    expect_same_checkpoints(straight.out, second.out);
  }
}

TEST_F(TrainDevicePath, TheStartLineNamesTheDevice) {
  const TrainDevice device = host_train_device();
  const TrainConfig c = tiny("start-line", "expert_choice");
  run(c, &device);
  const std::string metrics = train_test::read_text(c.out + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"device\":\"host\""), std::string::npos);
}

TEST_F(TrainDevicePath, ARunThatDoesNotFitTheDeviceIsRefusedBeforeItStarts) {
  TrainDevice small = host_train_device();
  small.free_memory = [] { return 1e4; };  // a device with 10 kB free
  const TrainConfig c = tiny("too-big", "expert_choice");
  std::string error;
  try {
    run(c, &small);
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("of host memory ("), std::string::npos) << error;
  EXPECT_NE(error.find(", GPU scratch "), std::string::npos) << error;  // a device's own part
  EXPECT_NE(error.find("more than the 10 kB available"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(c.out + "/metrics.jsonl"));
}

// `eval --device`: the model placed on a device (place_on_device) evaluates a checkpoint as the
// plain evaluation does, router state included; the GPU's device takes the same path.
TEST_F(TrainDevicePath, PlaceOnDeviceEvaluatesAsTheHost) {
  ecmoe::testing::CheckedBackend be;  // device memory told apart: no host pointer reaches an op
  const TrainDevice device = train_test::checked_train_device(be);
  for (const char* router : {"expert_choice", "expert_threshold"}) {
    SCOPED_TRACE(router);
    TrainConfig config = tiny(std::string("eval-") + router, router);
    config.model.kind = ModelKind::kDecoder;
    if (config.model.moe.router == RouterKind::kExpertThreshold)
      config.model.moe.threshold_warmup_steps = 2;
    run(config, nullptr);
    const Checkpoint ck = Checkpoint::open(config.out + "/checkpoint.safetensors");
    Transformer model(ck.config().model);
    FlatBuffer params(model.table()), state(model.state_table());
    ck.load_params(params);
    model.init_state(state);
    ck.load_router_state(state);
    const data::TokenDataset val = data::TokenDataset::open(dir / "data", "val");
    const BatchSource source = BatchSource::fixed(val, batch_spec(ck.config(), 4), 3);
    const EvalResult plain = evaluate(model, params, source, 3, &state);
    const nn::Buffer<float> on_device = place_on_device(model, device, params);
    const EvalResult placed = evaluate_on_backend(model, on_device.data(), source, 3, &state);
    EXPECT_EQ(plain.loss, placed.loss);
    EXPECT_EQ(plain.counted, placed.counted);
    ASSERT_EQ(plain.layers.size(), placed.layers.size());
    for (std::size_t l = 0; l < plain.layers.size(); ++l)
      EXPECT_EQ(plain.layers[l].mean_experts_per_token(),
                placed.layers[l].mean_experts_per_token());
  }
}
