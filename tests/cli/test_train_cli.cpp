// `ecmoe train`, `ecmoe eval` and `ecmoe bench train` through the real binary, on a data folder
// the test writes: exit codes, the final report, a resumed run, JSON output, one-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::cli_test::run_ecmoe;

class TrainCli : public ecmoe::cli_test::CliDataTest {
 protected:
  TrainCli() : CliDataTest("train-cli") {}
  void expect_error(const std::string& args, const std::string& fragment) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "ecmoe: error: ")) << r.err;
    EXPECT_TRUE(contains(r.err, fragment)) << "expected '" << fragment << "' in: " << r.err;
    const std::string last = r.err.substr(r.err.rfind("ecmoe: error: "));
    EXPECT_EQ(last.find('\n'), last.size() - 1) << "not one line: " << last;
  }
};

}  // namespace

TEST_F(TrainCli, TrainTinyThenEvaluateThenResume) {
  const std::string data = " --set data.dir=" + (dir / "data");
  const std::string out = dir / "run";
  const CliRun train = run("train --config tiny" + data + " --out " + out);
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  // The final report: validation perplexity and the experts-per-token histogram of layer 1.
  EXPECT_TRUE(contains(train.out, "trained steps 0..20")) << train.out;
  EXPECT_TRUE(contains(train.out, "validation loss ")) << train.out;
  EXPECT_TRUE(contains(train.out, "perplexity ")) << train.out;
  EXPECT_TRUE(contains(train.out, "layer 1 (expert_choice)")) << train.out;
  EXPECT_TRUE(contains(train.out, "experts per token:  0: ")) << train.out;
  // Not a terminal: plain progress lines every log_interval (5) steps.
  EXPECT_TRUE(contains(train.err, "step 5/20  loss ")) << train.err;
  EXPECT_FALSE(contains(train.err, "\r")) << train.err;
  for (const char* file : {"checkpoint.safetensors", "metrics.jsonl", "config.json"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;

  const CliRun eval = run("eval --checkpoint " + out + "/checkpoint.safetensors --json");
  ASSERT_EQ(eval.status, 0) << eval.out << eval.err;
  const auto j = nlohmann::json::parse(eval.out);  // one JSON object, nothing else
  EXPECT_EQ(j["step"], 20);
  EXPECT_EQ(j["split"], "val");
  EXPECT_GT(j["perplexity"].get<double>(), 1.0);
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["loss"].get<double>()), 1e-6);
  ASSERT_EQ(j["moe_layers"].size(), 1u);
  EXPECT_EQ(j["moe_layers"][0]["experts_per_token"].size(), 6u);
  EXPECT_EQ(j["moe_layers"][0]["tokens_per_expert"].size(), 4u);

  const CliRun text = run("eval --checkpoint " + out +
                          "/checkpoint.safetensors --split train --batches 3 --batch-size 2");
  ASSERT_EQ(text.status, 0) << text.out << text.err;
  EXPECT_TRUE(contains(text.out, "train split")) << text.out;
  EXPECT_TRUE(contains(text.out, "3 batches")) << text.out;
  EXPECT_TRUE(contains(text.out, "load per expert")) << text.out;

  // --resume without --config takes the checkpoint's config; --set may extend the run.
  const CliRun resumed = run("train --resume --out " + out + " --set steps=25");
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_TRUE(contains(resumed.out, "trained steps 20..25")) << resumed.out;
  expect_error("train --resume --out " + out + " --set model.d_model=64",
               "model.d_model is 32 in the checkpoint, 64 in this run");
  expect_error("train --config tiny" + data + " --out " + out, "already holds a checkpoint");
}

// --time-limit: stopped at a step boundary with a checkpoint, exit status 0, and the command that
// continues it; that command finishes the run. A negative limit is a usage error.
TEST_F(TrainCli, TimeLimitStopsAndSaysHowToContinue) {
  const std::string out = dir / "limited";
  const CliRun first = run("train --config tiny --set data.dir=" + (dir / "data") + " --out " +
                           out + " --time-limit 0.000001");
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  EXPECT_TRUE(contains(first.out, "stopped by the time limit at step 1 of 20")) << first.out;
  EXPECT_TRUE(contains(first.out, "continue with: ecmoe train --resume --out " + out)) << first.out;
  EXPECT_FALSE(contains(first.out, "validation loss")) << first.out;
  const CliRun rest = run("train --resume --out " + out);
  ASSERT_EQ(rest.status, 0) << rest.out << rest.err;
  EXPECT_TRUE(contains(rest.out, "trained steps 1..20")) << rest.out;
  EXPECT_TRUE(contains(rest.out, "validation loss ")) << rest.out;
  const CliRun negative = run("train --config tiny --time-limit -1 --out " + (dir / "neg"));
  EXPECT_NE(negative.status, 0);
}

TEST_F(TrainCli, ConfigErrorsAreOneLine) {
  expect_error("train --config tiny --set model.moe.routr=top2",
               "unknown config key 'model.moe.routr' (did you mean 'model.moe.router'?)");
  expect_error("train --config tiny --set model.n_heads=3", "n_heads (3) must divide d_model");
  expect_error("train --config tiny --set model.moe.capacity_factor_train=0",
               "capacity factor (train) must be > 0");
  expect_error("train --config tiny --set steps=many", "expected an integer, got 'many'");
  expect_error("train --config tiny --set data.dir=" + (dir / "nothing-here"), "does not exist");
  expect_error("train --config no-such-config", "no config named 'no-such-config'");
  expect_error("eval --checkpoint " + (dir / "none.safetensors"), "none.safetensors");
}

// --device: cpu is the plain trainer (its start line says so); cuda in a build without the CUDA
// backend is a one-line error before anything is written; an unknown device is a usage error.
// eval takes the same --device.
TEST_F(TrainCli, DeviceChoosesWhereTheRunTrains) {
  const std::string out = dir / "on-cpu";
  const CliRun cpu = run("train --config tiny --set steps=2 --set data.dir=" + (dir / "data") +
                         " --out " + out + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.out << cpu.err;
  EXPECT_TRUE(contains(ecmoe::train_test::read_text(out + "/metrics.jsonl"), "\"device\":\"cpu\""));
#ifndef ECMOE_HAVE_CUDA
  expect_error("train --config tiny --set data.dir=" + (dir / "data") + " --out " +
                   (dir / "on-gpu") + " --device cuda",
               "--device cuda: this ecmoe was built without the CUDA backend");
  EXPECT_FALSE(std::filesystem::exists(dir / "on-gpu"));
#endif
  // eval --device: the same figures from the checkpoint on either device.
  const std::string ck = out + "/checkpoint.safetensors";
  const CliRun plain = run("eval --checkpoint " + ck + " --json");
  const CliRun on_cpu = run("eval --checkpoint " + ck + " --json --device cpu");
  ASSERT_EQ(plain.status, 0) << plain.err;
  ASSERT_EQ(on_cpu.status, 0) << on_cpu.err;
  ASSERT_TRUE(nlohmann::json::parse(plain.out)["loss"].is_number());
  EXPECT_EQ(nlohmann::json::parse(plain.out)["loss"], nlohmann::json::parse(on_cpu.out)["loss"]);
  EXPECT_EQ(nlohmann::json::parse(on_cpu.out)["device"], "cpu");
#ifndef ECMOE_HAVE_CUDA
  expect_error("eval --checkpoint " + ck + " --device cuda",
               "--device cuda: this ecmoe was built without the CUDA backend");
#endif
  const CliRun unknown = run("train --config tiny --device gpu --out " + (dir / "x"));
  EXPECT_NE(unknown.status, 0);
  EXPECT_TRUE(contains(unknown.err, "--device")) << unknown.err;
}

TEST_F(TrainCli, PrintConfigAndHelp) {
  const CliRun printed = run("train --config tiny --set model.moe.router=top1 --print-config");
  ASSERT_EQ(printed.status, 0) << printed.err;
  const auto j = nlohmann::json::parse(printed.out);
  EXPECT_EQ(j["model"]["moe"]["router"], "top1");
  EXPECT_EQ(j["model"]["moe"]["capacity_factor_train"], 1.25);  // the router's default
  EXPECT_EQ(j["model"]["d_model"], 32);
  const CliRun help = run("train --help");
  EXPECT_EQ(help.status, 0);
  for (const char* fragment : {"--config", "--set", "--out", "--resume", "--print-config",
                               "model.moe.router", "schedule.peak_lr", "seeds.mask"})
    EXPECT_TRUE(contains(help.out, fragment)) << fragment;
}

TEST_F(TrainCli, BenchTrainRunsOnSyntheticTokens) {
  const CliRun r =
      run("bench train --config tiny --steps 3 --warmup 1 --json --peak-gflops 100 "
          "--set data.dir=" +
          (dir / "not-prepared"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["data"], "synthetic");
  EXPECT_EQ(j["tokens_per_step"], 8 * 32);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);
  EXPECT_GT(j["activated_parameters"].get<double>(), 0.0);
  EXPECT_EQ(j["peak_gflops"], 100.0);
  EXPECT_NEAR(j["mfu"].get<double>(), j["gflops"].get<double>() / 100.0, 1e-12);
  // The profile: every class, summing to the profiled step (the remainder is the host's).
  const auto& profile = j["profile"];
  EXPECT_EQ(profile["steps"], 3);
  double classes = 0;
  for (const char* c : {"GEMMs", "attention", "MoE routing, dispatch, combine", "elementwise",
                        "loss", "copies", "optimizer", "unclassified", "host and other"}) {
    ASSERT_TRUE(profile["seconds_per_step_by_class"].contains(c)) << c;
    EXPECT_GE(profile["seconds_per_step_by_class"][c].get<double>(), 0.0) << c;
    classes += profile["seconds_per_step_by_class"][c].get<double>();
  }
  EXPECT_GT(profile["seconds_per_step_by_class"]["GEMMs"].get<double>(), 0.0);
  EXPECT_EQ(profile["seconds_per_step_by_class"]["unclassified"].get<double>(), 0.0);
  EXPECT_GT(profile["seconds_per_step_by_op"]["attention"].get<double>(), 0.0);
  EXPECT_GT(profile["seconds_per_step_by_op"]["routing"].get<double>(), 0.0);
  EXPECT_NEAR(classes, profile["step_seconds"].get<double>(), 1e-9);
  EXPECT_FALSE(j.contains("device_memory_bytes"));  // the host's is not measured
  const CliRun unprofiled = run(
      "bench train --config tiny --steps 1 --warmup 0 --json --profile-steps 0 --set data.dir=" +
      (dir / "not-prepared"));
  ASSERT_EQ(unprofiled.status, 0) << unprofiled.err;
  EXPECT_FALSE(nlohmann::json::parse(unprofiled.out).contains("profile"));
  const CliRun real =
      run("bench train --config tiny --steps 2 --warmup 0 --set data.dir=" + (dir / "data"));
  ASSERT_EQ(real.status, 0) << real.out << real.err;
  EXPECT_TRUE(contains(real.out, "MFU")) << real.out;
  EXPECT_TRUE(contains(real.out, dir / "data")) << real.out;
  EXPECT_TRUE(contains(real.out, "each op timed alone")) << real.out;
}
