// The training config's `precision` key: top level in the JSON form and for --set, stored in
// ModelConfig (the model's GEMMs read it), fp32 by default, a one-line error for other values.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
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
    EXPECT_NE(m.find("unknown precision 'fp16' (expected fp32 or bf16)"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}
