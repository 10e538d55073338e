// Config files and --set overrides: the JSON form round-trips, every key can be set by its type,
// the router rule applies defaults, and bad input is a one-line error naming the key.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/config_overrides.h"
#include "train/train_config.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

ConfigJson defaults() { return config_to_json(TrainConfig{}); }

TrainConfig with(const std::vector<std::string>& sets) {
  ConfigJson j = defaults();
  apply_overrides(j, sets);
  return config_from_json(j);
}

// Runs `body`, expects an ecmoe::Error whose message contains every fragment.
template <typename Body>
void expect_error(Body body, const std::vector<std::string>& fragments) {
  try {
    body();
    ADD_FAILURE() << "no error; expected one mentioning " << fragments[0];
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

}  // namespace

TEST(TrainConfig, JsonRoundTripsEveryField) {
  TrainConfig c;
  c.model.kind = ModelKind::kDecoder;
  c.model.d_model = 48;
  c.model.moe.router = RouterKind::kExpertChoiceCapped;
  c.model.moe.capped.lambda = 0.25f;
  c.data.mask_prob = 0.2f;
  c.optimizer.beta2 = 0.95;
  c.schedule.decay = LrDecay::Cosine;
  c.schedule.total_steps = 77;
  c.seeds.data = 123456789012345ULL;
  c.eval.batch_size = 3;
  c.out = "somewhere";
  const ConfigJson j = config_to_json(c);
  EXPECT_EQ(config_to_json(config_from_json(j)), j);
  EXPECT_EQ(j["model"]["kind"], "decoder");
  EXPECT_EQ(j["model"]["moe"]["router"], "expert_choice_capped");
  EXPECT_EQ(j["schedule"]["decay"], "cosine");
  // Floats are written as their shortest decimal, so files stay readable.
  EXPECT_EQ(j["data"]["mask_prob"].dump(), "0.2");
  const TrainConfig back = config_from_json(j);
  EXPECT_EQ(back.model.d_model, 48);
  EXPECT_EQ(back.model.moe.capped.lambda, 0.25f);
  EXPECT_EQ(back.seeds.data, 123456789012345ULL);
  EXPECT_EQ(back.schedule.decay, LrDecay::Cosine);
}

TEST(TrainConfig, PartialJsonKeepsDefaults) {
  const TrainConfig c = config_from_json(ConfigJson::parse(R"({"model": {"d_model": 64}})"));
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.n_layers, TrainConfig{}.model.n_layers);
  EXPECT_EQ(c.steps, TrainConfig{}.steps);
}

TEST(TrainConfig, StrictJsonReading) {
  expect_error([] { config_from_json(ConfigJson::parse(R"({"model": {"d_modle": 64}})")); },
               {"unknown key 'model.d_modle'", "d_model"});
  expect_error([] { config_from_json(ConfigJson::parse(R"({"stepz": 1})")); },
               {"unknown key 'stepz'", "steps"});
  expect_error([] { config_from_json(ConfigJson::parse(R"({"steps": 1.5})")); },
               {"steps", "integer"});
  expect_error([] { config_from_json(ConfigJson::parse(R"({"steps": "ten"})")); },
               {"steps", "integer"});
  expect_error([] { config_from_json(ConfigJson::parse(R"({"model": 3})")); }, {"model", "object"});
  expect_error(
      [] { config_from_json(ConfigJson::parse(R"({"model": {"moe": {"router": "top3"}}})")); },
      {"model.moe.router", "unknown router 'top3'"});
  expect_error([] { config_from_json(ConfigJson::parse(R"({"model": {"n_layers": -2e10}})")); },
               {"model.n_layers"});
}

TEST(TrainConfig, SetParsesByTheFieldsType) {
  const TrainConfig c =
      with({"model.d_model=64", "schedule.peak_lr=2e-3", "out=runs/x",
            "model.moe.renormalize_gates=false", "seeds.init=18446744073709551615",
            "model.kind=decoder", "schedule.decay=constant", "clip_norm=0"});
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_FLOAT_EQ(c.schedule.peak_lr, 2e-3f);
  EXPECT_EQ(c.out, "runs/x");
  EXPECT_FALSE(c.model.moe.renormalize_gates);
  EXPECT_EQ(c.seeds.init, 18446744073709551615ULL);
  EXPECT_EQ(c.model.kind, ModelKind::kDecoder);
  EXPECT_EQ(c.schedule.decay, LrDecay::Constant);
  EXPECT_EQ(c.clip_norm, 0.f);
  // A small value of an unsigned field parses as a signed integer and must still be accepted.
  EXPECT_EQ(with({"seeds.data=7"}).seeds.data, 7u);
  expect_error([] { with({"seeds.data=-1"}); }, {"seeds.data", "out of range"});
  // The last --set of a key wins.
  EXPECT_EQ(with({"steps=5", "steps=7"}).steps, 7);
  // A string value may contain '='.
  EXPECT_EQ(with({"data.dir=a=b"}).data.dir, "a=b");
}

TEST(TrainConfig, SetErrorsNameTheKey) {
  expect_error([] { with({"model.moe.routr=top2"}); },
               {"unknown config key 'model.moe.routr'", "did you mean 'model.moe.router'",
                "keys in model.moe:", "capacity_factor_train"});
  expect_error([] { with({"modle.d_model=3"}); },
               {"unknown config key 'modle.d_model'", "did you mean 'model.d_model'",
                "keys in the top level:"});
  expect_error([] { with({"model.moe=3"}); }, {"'model.moe' is a group", "router"});
  expect_error([] { with({"steps.x=3"}); }, {"steps is a value"});
  expect_error([] { with({"steps"}); }, {"KEY=VALUE"});
  expect_error([] { with({"=3"}); }, {"KEY=VALUE"});
  expect_error([] { with({"steps=ten"}); }, {"--set steps", "integer", "'ten'"});
  expect_error([] { with({"steps=1.5"}); }, {"--set steps", "integer"});
  expect_error([] { with({"schedule.peak_lr=fast"}); }, {"schedule.peak_lr", "number"});
  expect_error([] { with({"model.moe.jitter=0.1x"}); }, {"model.moe.jitter", "number"});
  expect_error([] { with({"model.moe.batch_prioritized=maybe"}); },
               {"model.moe.batch_prioritized", "true or false"});
  expect_error([] { with({"model.moe.router=top3"}); }, {"unknown router 'top3'"});
  expect_error([] { with({"model.kind=ring"}); }, {"model.kind", "encoder or decoder"});
}

// Names from other trainers suggest the key they mean, not the nearest spelling ("lr" is two
// edits from "out", but means schedule.peak_lr).
TEST(TrainConfig, SetSuggestsTheKeyMeantByOtherTrainersNames) {
  expect_error([] { with({"lr=0.1"}); },
               {"unknown config key 'lr'", "did you mean 'schedule.peak_lr'"});
  expect_error([] { with({"learning_rate=0.1"}); }, {"did you mean 'schedule.peak_lr'"});
  expect_error([] { with({"epochs=3"}); }, {"did you mean 'steps'"});
  expect_error([] { with({"wd=0.1"}); }, {"did you mean 'optimizer.weight_decay'"});
  expect_error([] { with({"clip=1"}); }, {"did you mean 'clip_norm'"});
  expect_error([] { with({"batch=8"}); }, {"did you mean 'batch_size'"});
  expect_error([] { with({"gradient_accumulation_steps=4"}); }, {"did you mean 'grad_accum'"});
  expect_error([] { with({"accumulate_grad_batches=4"}); }, {"did you mean 'grad_accum'"});
  expect_error([] { with({"optimizer.lr=0.1"}); }, {"did you mean 'schedule.peak_lr'"});
}

// NaN and infinity are not numbers a config can hold (JSON writes them as null): the error says
// so rather than "got null".
TEST(TrainConfig, SetRefusesNonFiniteNumbers) {
  for (const char* value : {"nan", "NaN", "inf", "-inf", "infinity", "1e999"})
    expect_error([&] { with({std::string("schedule.peak_lr=") + value}); },
                 {"--set schedule.peak_lr", "is not a finite number", value});
  EXPECT_FLOAT_EQ(with({"schedule.peak_lr=1e-30"}).schedule.peak_lr, 1e-30f);
}

TEST(TrainConfig, SetRefusesStringsThatAreNotUtf8) {
  // Found by fuzzing: the value was accepted, then writing the config threw nlohmann's
  // type_error (an internal error instead of a one-line message).
  expect_error([] { with({"data.dir=ab\xff"}); }, {"--set data.dir", "not valid UTF-8", "byte 3"});
  EXPECT_EQ(with({"data.dir=d\xc3\xa9j\xc3\xa0"}).data.dir, "d\xc3\xa9j\xc3\xa0");
}

TEST(TrainConfig, ValidationOfHugeLayerCountsIsImmediate) {
  // Found by fuzzing: validate() checked every layer's FFN config, 2^31 of them (~25 s).
  const auto t0 = std::chrono::steady_clock::now();
  with({"model.n_layers=2147483647"}).validate();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  expect_error(
      [] {
        with({"model.n_layers=2147483647", "model.moe.n_experts=0"}).validate();
      },
      {"n_experts"});
}

TEST(TrainConfig, ValidationCatchesConfigsThatCannotWork) {
  expect_error([] { with({"model.n_heads=3"}).validate(); },
               {"n_heads (3) must divide d_model (256)"});
  expect_error([] { with({"model.moe.capacity_factor_train=0"}).validate(); },
               {"capacity factor (train) must be > 0"});
  expect_error([] { with({"model.moe.capacity_factor_eval=0"}).validate(); },
               {"capacity factor (eval) must be > 0"});
  expect_error([] { with({"steps=0"}).validate(); }, {"steps must be positive"});
  expect_error([] { with({"batch_size=0"}).validate(); }, {"batch_size"});
  expect_error([] { with({"grad_accum=0"}).validate(); }, {"grad_accum must be >= 1"});
  expect_error(
      [] {
        with({"batch_size=10", "grad_accum=4"}).validate();
      },
      {"batch_size (10) must be divisible by grad_accum (4)"});
  expect_error([] { with({"data.mask_prob=0"}).validate(); }, {"data.mask_prob"});
  expect_error([] { with({"data.mask_token_prob=0.95"}).validate(); }, {"mask_token_prob"});
  expect_error([] { with({"optimizer.beta2=1"}).validate(); }, {"beta2"});
  expect_error([] { with({"schedule.peak_lr=0"}).validate(); }, {"learning rate"});
  expect_error([] { with({"model.vocab_size=-1"}).validate(); }, {"vocab_size"});
  expect_error([] { with({"data.dir="}).validate(); }, {"data.dir"});
  with({}).validate();
  with({"model.vocab_size=0"}).validate();  // from the data: fine here
}

TEST(TrainConfig, SettingTheRouterAppliesItsDefaults) {
  // From expert choice (c = 2, no aux loss) to top-2: GShard's 1.25 / 2.0 and weight 0.01.
  TrainConfig c = with({"model.moe.router=top2"});
  EXPECT_EQ(c.model.moe.router, RouterKind::kTop2);
  EXPECT_FLOAT_EQ(c.model.moe.capacity_factor_train, 1.25f);
  EXPECT_FLOAT_EQ(c.model.moe.capacity_factor_eval, 2.0f);
  EXPECT_FLOAT_EQ(c.model.moe.load_balance_weight, 0.01f);
  // A field set explicitly wins, before or after the router.
  c = with({"model.moe.capacity_factor_train=1.5", "model.moe.router=top1"});
  EXPECT_FLOAT_EQ(c.model.moe.capacity_factor_train, 1.5f);
  EXPECT_FLOAT_EQ(c.model.moe.capacity_factor_eval, 2.0f);
  EXPECT_FLOAT_EQ(c.model.moe.load_balance_weight, 0.01f);
  c = with({"model.moe.router=top1", "model.moe.load_balance_weight=0"});
  EXPECT_FLOAT_EQ(c.model.moe.load_balance_weight, 0.f);
  // Back to expert choice from a token-choice base: its defaults again.
  ConfigJson j = config_to_json(with({"model.moe.router=top2"}));
  apply_overrides(j, {"model.moe.router=expert_choice"});
  c = config_from_json(j);
  EXPECT_FLOAT_EQ(c.model.moe.capacity_factor_train, 2.f);
  EXPECT_FLOAT_EQ(c.model.moe.load_balance_weight, 0.f);
  // Without a router --set, capacity from the file stays as it is.
  j = config_to_json(with({"model.moe.router=top2", "model.moe.capacity_factor_train=3"}));
  apply_overrides(j, {"steps=5"});
  EXPECT_FLOAT_EQ(config_from_json(j).model.moe.capacity_factor_train, 3.f);
}

TEST(TrainConfig, FilesByNameOrPath) {
  TempDir dir("train-config");
  const std::string path = dir / "mine.json";
  train_test::write_text(path, R"({
    // comments are allowed
    "model": {"d_model": 64, "n_heads": 8}, "steps": 12})");
  TrainConfig c = load_train_config(path, {"steps=13"});
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.steps, 13);

  // A bare name is configs/NAME.json under the current directory.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::create_directories(dir / "configs");
  train_test::write_text(dir / "configs/named.json", R"({"batch_size": 3})");
  std::filesystem::current_path(dir.str());
  c = load_train_config("named", {});
  std::filesystem::current_path(cwd);
  EXPECT_EQ(c.batch_size, 3);

  train_test::write_text(dir / "bad.json", R"({"model": {"n_expertz": 4}})");
  expect_error([&] { read_config_file(dir / "bad.json"); },
               {"bad.json", "unknown key 'model.n_expertz'"});
  train_test::write_text(dir / "broken.json", R"({"model": )");
  expect_error([&] { read_config_file(dir / "broken.json"); }, {"broken.json", "not valid JSON"});
  expect_error([&] { resolve_config_path("no-such-config-name"); },
               {"no config named 'no-such-config-name'"});
  expect_error([&] { resolve_config_path(dir / "missing.json"); }, {"does not exist"});
}

// The shipped configs parse and validate, and say what the docs say they do.
TEST(TrainConfig, ShippedConfigs) {
  const std::string configs = std::string(ECMOE_FIXTURE_DIR) + "/../../configs/";
  const TrainConfig small = load_train_config(configs + "small.json", {});
  EXPECT_EQ(small.model.kind, ModelKind::kEncoder);
  EXPECT_EQ(small.model.d_model, 256);
  EXPECT_EQ(small.model.n_layers, 4);
  EXPECT_EQ(small.model.n_heads, 4);
  EXPECT_EQ(small.model.d_ff, 1024);
  EXPECT_EQ(small.model.seq_len, 128);
  EXPECT_EQ(small.model.moe.n_experts, 8);
  EXPECT_EQ(small.model.moe.router, RouterKind::kExpertChoice);
  EXPECT_FLOAT_EQ(small.model.moe.capacity_factor_train, 2.f);
  EXPECT_EQ(small.batch_size, 32);
  EXPECT_EQ(small.model.vocab_size, 0);
  const TrainConfig tiny = load_train_config(configs + "tiny.json", {});
  EXPECT_EQ(tiny.model.d_model, 32);
  EXPECT_EQ(tiny.model.n_layers, 2);
  EXPECT_EQ(tiny.model.moe.n_experts, 4);
  // Issue 16's GPU-sized model: 32k tokens a step, 64 experts in every other layer.
  const TrainConfig gpu = load_train_config(configs + "gpu-small.json", {});
  EXPECT_EQ(gpu.model.d_model, 768);
  EXPECT_EQ(gpu.model.n_layers, 12);
  EXPECT_EQ(gpu.model.n_heads, 12);
  EXPECT_EQ(gpu.model.d_ff, 3072);
  EXPECT_EQ(gpu.model.moe_every, 2);
  EXPECT_EQ(gpu.model.moe.n_experts, 64);
  EXPECT_EQ(gpu.model.moe.router, RouterKind::kExpertChoice);
  EXPECT_EQ(gpu.batch_size * gpu.model.seq_len, 32768);
  EXPECT_EQ(gpu.model.precision, Precision::kBf16);
}

TEST(TrainConfig, FlattenListsEveryLeaf) {
  const auto flat = flatten_config(defaults());
  ASSERT_FALSE(flat.empty());
  EXPECT_EQ(flat.front().first, "model.kind");
  bool found = false;
  for (const auto& [key, value] : flat) {
    EXPECT_FALSE(value.is_object()) << key;
    found = found || key == "model.moe.capped.lambda";
  }
  EXPECT_TRUE(found);
}
