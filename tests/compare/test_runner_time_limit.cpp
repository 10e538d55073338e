// A suite under a time limit (RunnerOptions::time_limit_seconds, `compare --time-limit`): each
// call stops the run in progress at a checkpoint and reports the suite incomplete; calling again
// continues that run from its checkpoint and then the next runs. The suite finished that way
// holds the same results, to the bit, as one run without a limit.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "../train/train_test_util.h"
#include "compare/runner.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "model/checked_backend.h"
#include "train/config_overrides.h"
#include "train/train_config.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;
namespace fs = std::filesystem;

namespace {

compare::Suite two_run_suite(const std::string& base_config) {
  compare::Suite suite;
  suite.name = "limit-test";
  suite.base_config = base_config;
  suite.base_sets = {"steps=4", "eval.interval=2", "checkpoint_interval=0"};
  for (const auto& [name, router] : {std::pair{"ec", "expert_choice"}, {"top2", "top2"}}) {
    compare::SuiteRun run;
    run.name = name;
    run.variant = router;
    run.family = "encoder";
    run.sets = {std::string("model.moe.router=") + router};
    suite.runs.push_back(run);
  }
  return suite;
}

double final_loss(const std::string& run_dir) {
  const std::string path = (fs::path(run_dir) / "result.json").string();
  const auto j = parse_ordered_json(read_input_file(path, "result"), path);
  return j.at("final").at("loss").get<double>();
}

}  // namespace

TEST(RunnerTimeLimit, ASuiteContinuesOverSeveralCallsToTheSameResults) {
  TempDir dir("runner-limit");
  train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  const TrainConfig tiny = train_test::tiny_config(dir / "data", dir / "unused");
  const std::string config_path = dir / "tiny.json";
  std::ofstream(config_path) << config_to_json(tiny).dump(2);
  const compare::Suite suite = two_run_suite(config_path);
  std::FILE* sink = std::fopen("/dev/null", "w");

  compare::RunnerOptions options;
  options.out = dir / "straight";
  options.log = sink;
  const compare::SuiteProgress straight = compare::run_suite(suite, options);
  EXPECT_TRUE(straight.complete());

  compare::RunnerOptions limited = options;
  limited.out = dir / "limited";
  limited.time_limit_seconds = 1e-9;  // up at the first step boundary
  int calls = 0;
  compare::SuiteProgress p;
  do {
    p = compare::run_suite(suite, limited);
    ++calls;
    if (calls == 1) {
      EXPECT_EQ(p.finished, 0);
      EXPECT_TRUE(fs::exists(fs::path(p.dirs[0]) / "checkpoint.safetensors"));
      EXPECT_FALSE(fs::exists(fs::path(p.dirs[0]) / "result.json"));
      EXPECT_FALSE(fs::exists(p.dirs[1]));  // the next run is not started
    }
  } while (!p.complete() && calls < 20);
  std::fclose(sink);
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(calls, 8) << "one step per call: 2 runs x 4 steps";
  for (size_t i = 0; i < p.dirs.size(); ++i)
    EXPECT_EQ(final_loss(p.dirs[i]), final_loss(straight.dirs[i])) << p.dirs[i];
}

// compare --device: a decoder suite with its post-training evaluations (validation, leakage, the
// threshold router, generation with the KV cache) on a device, here the host device with its
// memory told apart (no host pointer may reach an op), gives the plain suite's results.
TEST(RunnerDevice, TheRunsAndTheirPostEvaluationsRunOnTheDevice) {
  TempDir dir("runner-device");
  train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  TrainConfig tiny = train_test::tiny_config(dir / "data", dir / "unused");
  tiny.model.kind = ModelKind::kDecoder;
  const std::string config_path = dir / "tiny.json";
  std::ofstream(config_path) << config_to_json(tiny).dump(2);
  compare::Suite suite;
  suite.name = "device-test";
  suite.base_config = config_path;
  suite.base_sets = {"steps=4", "eval.interval=2", "eval.batches=2", "checkpoint_interval=0"};
  compare::SuiteRun run;
  run.name = "dec-ec";
  run.variant = "decoder EC";
  run.family = "decoder";
  run.sets = {"model.moe.router=expert_choice"};
  run.measure_leakage = true;
  run.eval_routers = {"expert_threshold"};
  suite.runs.push_back(run);
  std::FILE* sink = std::fopen("/dev/null", "w");
  compare::RunnerOptions options;
  options.out = dir / "plain";
  options.log = sink;
  const compare::SuiteProgress plain = compare::run_suite(suite, options);
  ecmoe::testing::CheckedBackend be;
  const TrainDevice device = train_test::checked_train_device(be);
  options.out = dir / "device";
  options.device = &device;
  const compare::SuiteProgress on_device = compare::run_suite(suite, options);
  std::fclose(sink);
  ASSERT_TRUE(plain.complete() && on_device.complete());
  const auto read = [](const std::string& run_dir) {
    const std::string path = (fs::path(run_dir) / "result.json").string();
    return parse_ordered_json(read_input_file(path, "result"), path);
  };
  const auto a = read(plain.dirs[0]), b = read(on_device.dirs[0]);
  EXPECT_EQ(a.at("final").at("loss"), b.at("final").at("loss"));
  ASSERT_EQ(a.at("post_evals").size(), 2u);
  ASSERT_EQ(b.at("post_evals").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    auto x = a.at("post_evals")[i], y = b.at("post_evals")[i];
    EXPECT_EQ(x.at("router"), y.at("router"));
    EXPECT_EQ(x.at("loss"), y.at("loss"));
    EXPECT_EQ(x.at("leakage"), y.at("leakage"));
    EXPECT_EQ(x.at("generation_tokens_per_second").get<double>() > 0,
              y.at("generation_tokens_per_second").get<double>() > 0);
  }
  EXPECT_GT(b.at("post_evals")[1].at("generation_tokens_per_second").get<double>(), 0.0);
  EXPECT_GT(be.checks, 1000);
}
