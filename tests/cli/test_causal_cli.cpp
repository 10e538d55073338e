// Decoder causality through the real binary: `ecmoe eval --leakage` (batch expert choice leaks,
// its thresholds do not), `--router expert_threshold`, `ecmoe calibrate` rewriting the cutoffs,
// and one-line errors for the settings that make no sense.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;

class CausalCli : public ecmoe::cli_test::CliDataTest {
 protected:
  CausalCli() : CliDataTest("causal-cli", 4000) {}
  void expect_error(const std::string& args, const std::string& fragment) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.err, fragment)) << "expected '" << fragment << "' in: " << r.err;
  }
  std::string train(const std::string& name, const std::string& sets) {
    const std::string out = dir / name;
    const CliRun r = run("train --config tiny --set data.dir=" + (dir / "data") +
                         " --set steps=8 --set eval.interval=0 " + sets + " --out " + out);
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    return out + "/checkpoint.safetensors";
  }
};

}  // namespace

TEST_F(CausalCli, LeakageThresholdsAndCalibration) {
  const std::string ck = train("ec", "--set model.kind=decoder");
  const CliRun leaky = run("eval --checkpoint " + ck + " --leakage --json");
  ASSERT_EQ(leaky.status, 0) << leaky.err;
  const auto j = nlohmann::json::parse(leaky.out);
  EXPECT_EQ(j["router"], "expert_choice");
  EXPECT_FALSE(j["leakage"]["exact"].get<bool>());
  EXPECT_GT(j["leakage"]["changed_positions"].get<int64_t>(), 0);
  EXPECT_GT(j["leakage"]["max_abs_change"].get<double>(), 0.0);
  // --device cpu (the default, spelled out) with --leakage: the same figures. The device path
  // itself is tested through the host device (test_leakage, test_train_device).
  const CliRun placed = run("eval --checkpoint " + ck + " --leakage --json --device cpu");
  ASSERT_EQ(placed.status, 0) << placed.err;
  const auto p = nlohmann::json::parse(placed.out);
  EXPECT_EQ(p["loss"], j["loss"]);
  EXPECT_EQ(p["leakage"], j["leakage"]);

  const CliRun causal =
      run("eval --checkpoint " + ck + " --router expert_threshold --leakage --json");
  ASSERT_EQ(causal.status, 0) << causal.err;
  const auto t = nlohmann::json::parse(causal.out);
  EXPECT_EQ(t["router"], "expert_threshold");
  EXPECT_EQ(t["trained_router"], "expert_choice");
  EXPECT_TRUE(t["leakage"]["exact"].get<bool>());
  EXPECT_EQ(t["leakage"]["max_abs_change"].get<double>(), 0.0);
  EXPECT_GT(t["leakage"]["positions"].get<int64_t>(), 0);

  const CliRun text = run("eval --checkpoint " + ck + " --router expert_threshold --leakage");
  EXPECT_TRUE(contains(text.out, "bitwise 0: causal")) << text.out;
  EXPECT_TRUE(contains(text.out, "layer 1 (expert_threshold)")) << text.out;

  const auto before = std::filesystem::last_write_time(ck);
  const CliRun cal = run("calibrate --checkpoint " + ck + " --batches 4 --json");
  ASSERT_EQ(cal.status, 0) << cal.err;
  const auto c = nlohmann::json::parse(cal.out);
  const double mean =
      c["expert_threshold"]["moe_layers"][0]["mean_experts_per_token"].get<double>();
  EXPECT_NEAR(mean, c["capacity_factor"].get<double>(), 0.2 * c["capacity_factor"].get<double>());
  EXPECT_EQ(c["cutoffs"]["layers.1.ffn.router.cutoff"].size(), 4u);
  EXPECT_NE(std::filesystem::last_write_time(ck), before);
  EXPECT_EQ(run("eval --checkpoint " + ck + " --router expert_threshold").status, 0);

  expect_error("eval --checkpoint " + ck + " --router top2", "cannot be evaluated with top2");
  expect_error("generate --checkpoint " + ck + " --prompt x --router expert_choice",
               "batch expert choice cannot generate");
}

TEST_F(CausalCli, EncoderLeakageAndTop2CalibrationAreErrors) {
  const std::string enc = train("enc", "");
  expect_error("eval --checkpoint " + enc + " --leakage", "needs a decoder");
  const std::string top2 = train("top2", "--set model.kind=decoder --set model.moe.router=top2");
  expect_error("calibrate --checkpoint " + top2, "which has no cutoffs");
}
