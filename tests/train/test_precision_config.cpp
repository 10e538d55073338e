// The training config's `precision` key: top level in the JSON form and for --set, stored in
// ModelConfig (the model's GEMMs read it), fp32 by default, a one-line error for other values.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "core/gemm.h"
#include "core/precision.h"
#include "train/config_overrides.h"
#include "train/train_config.h"

using namespace ecmoe;

TEST(PrecisionConfig, DefaultIsFp32AtTheTopLevel) {
  const ConfigJson j = config_to_json(TrainConfig{});
  ASSERT_TRUE(j.contains("precision"));
  EXPECT_EQ(j["precision"], "fp32");
  EXPECT_FALSE(j["model"].contains("precision"));
  EXPECT_EQ(TrainConfig{}.model.precision, Precision::kFp32);
}

TEST(PrecisionConfig, SetAndRoundTrip) {
  ConfigJson j = config_to_json(TrainConfig{});
  apply_overrides(j, {"precision=bf16"});
  const TrainConfig c = config_from_json(j);
  EXPECT_EQ(c.model.precision, Precision::kBf16);
  EXPECT_EQ(config_to_json(c)["precision"], "bf16");
  // The model's layers take it: every FFN config carries it.
  EXPECT_EQ(c.model.ffn_config(0).precision, Precision::kBf16);
  EXPECT_EQ(c.model.ffn_config(1).precision, Precision::kBf16);
  // A config without the key (an older checkpoint's) reads as fp32.
  ConfigJson old = config_to_json(TrainConfig{});
  old.erase("precision");
  EXPECT_EQ(config_from_json(old).model.precision, Precision::kFp32);
}

TEST(PrecisionConfig, UnknownValueIsAOneLineError) {
  ConfigJson j = config_to_json(TrainConfig{});
  try {
    apply_overrides(j, {"precision=fp16"});
    config_from_json(j);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("precision"), std::string::npos) << m;
    EXPECT_NE(m.find("unknown precision 'fp16' (expected fp32, bf16 or auto)"), std::string::npos)
        << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

// "auto" is bf16 exactly where bf16 GEMMs run natively, resolved when the config is read: the
// config's JSON form (config.json, a checkpoint's metadata) names bf16 or fp32, never auto. With
// the fallback forced (ECMOE_BF16_FALLBACK=1) auto is fp32, so the slow emulation never runs
// unasked.
TEST(PrecisionConfig, AutoResolvesToTheNativePrecisionWhenRead) {
  for (const bool forced : {false, true}) {
    set_bf16_fallback(forced);
    const Precision expected = bf16_native() ? Precision::kBf16 : Precision::kFp32;
    EXPECT_EQ(native_precision(), expected);
    if (forced) {
      EXPECT_EQ(expected, Precision::kFp32);
    }
    ConfigJson j = config_to_json(TrainConfig{});
    apply_overrides(j, {"precision=auto"});
    const TrainConfig c = config_from_json(j);
    EXPECT_EQ(c.model.precision, expected) << "forced fallback " << forced;
    EXPECT_EQ(config_to_json(c)["precision"], precision_name(expected));
  }
  set_bf16_fallback(false);
}

// configs/small.json (the main job) trains in the native precision; tiny.json, the tests'
// config, and a config without the key stay fp32.
TEST(PrecisionConfig, ShippedConfigsPrecision) {
  const std::string configs = std::string(ECMOE_FIXTURE_DIR) + "/../../configs/";
  set_bf16_fallback(false);
  EXPECT_EQ(load_train_config(configs + "small.json", {}).model.precision, native_precision());
  EXPECT_EQ(load_train_config(configs + "small.json", {"precision=fp32"}).model.precision,
            Precision::kFp32);
  EXPECT_EQ(load_train_config(configs + "tiny.json", {}).model.precision, Precision::kFp32);
}
