// The commands that take --device cuda, through the real binary, each beside the same command on
// the CPU: `train`, `eval` and `generate` (a decoder), `finetune` and `predict` (an encoder), and
// `bench train`'s device report, and `eval`'s memory check against the device. The library's tests
// check the device paths themselves (test_cuda_training.cpp, test_cuda_decode.cpp,
// test_cuda_finetune.cpp); these check that each command reaches them and says so, with the CPU's
// results (fp32: within 1e-4 relative).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "../cli/cli_test_util.h"
#include "cuda_test_util.h"

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::cli_test::run_ecmoe;
using ecmoe::train_test::TempDir;

class CudaCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ECMOE_REQUIRE_GPU();
    for (int i = 0; i < 4; ++i)
      ecmoe::train_test::write_text(dir / ("in/part" + std::to_string(i) + ".txt"),
                                    ecmoe::data::test::sample_text(300 + uint64_t(i), 80));
    const CliRun prepare = run("prepare --input " + (dir / "in") + " --out " + (dir / "data") +
                               " --vocab-size 320 --val-fraction 0.25");
    ASSERT_EQ(prepare.status, 0) << prepare.err;
  }
  CliRun run(const std::string& args) { return run_ecmoe(args, dir / "stderr.txt"); }
  // `train` of the tiny config on `device` into dir/out: 6 fp32 steps, a checkpoint at the end.
  void train(const std::string& out, const std::string& kind, const std::string& device) {
    const CliRun r =
        run("train --config tiny --set data.dir=" + (dir / "data") + " --set model.kind=" + kind +
            " --set steps=6 --set eval.interval=6 --set checkpoint_interval=0"
            " --device " +
            device + " --out " + (dir / out));
    ASSERT_EQ(r.status, 0) << device << ": " << r.err;
  }
  TempDir dir{"cuda-cli"};
};

void expect_relative(double gpu, double cpu, const std::string& what) {
  EXPECT_NEAR(gpu, cpu, 1e-4 * std::fabs(cpu)) << what;
}

TEST_F(CudaCli, TrainEvalAndGenerateOnTheDeviceAsOnTheCpu) {
  train("cpu", "decoder", "cpu");
  train("gpu", "decoder", "cuda");
  const auto cpu_lines = ecmoe::train_test::train_lines(dir / "cpu/metrics.jsonl");
  const auto gpu_lines = ecmoe::train_test::train_lines(dir / "gpu/metrics.jsonl");
  ASSERT_EQ(cpu_lines.size(), 6u);
  ASSERT_EQ(gpu_lines.size(), 6u);
  for (std::size_t i = 0; i < cpu_lines.size(); ++i)
    expect_relative(gpu_lines[i]["loss"], cpu_lines[i]["loss"], "step " + std::to_string(i + 1));
  EXPECT_TRUE(
      contains(ecmoe::train_test::read_text(dir / "gpu/metrics.jsonl"), "\"device\":\"cuda\""));

  // The GPU's checkpoint evaluated on both.
  const std::string checkpoint = dir / "gpu/checkpoint.safetensors";
  nlohmann::json eval[2];
  for (int d = 0; d < 2; ++d) {
    const CliRun r =
        run("eval --checkpoint " + checkpoint + " --json --device " + (d ? "cuda" : "cpu"));
    ASSERT_EQ(r.status, 0) << r.err;
    eval[d] = nlohmann::json::parse(r.out);
  }
  EXPECT_EQ(eval[0]["device"], "cpu");
  EXPECT_EQ(eval[1]["device"], "cuda");
  EXPECT_EQ(eval[1]["targets"], eval[0]["targets"]);
  expect_relative(eval[1]["loss"], eval[0]["loss"], "eval");
  // A batch that cannot fit is refused before anything runs, against the device's memory.
  const CliRun big =
      run("eval --checkpoint " + checkpoint + " --batch-size 100000000 --device cuda");
  EXPECT_EQ(big.status, 1);
  EXPECT_TRUE(contains(big.err, "--batch-size=100000000 needs ")) << big.err;
  EXPECT_TRUE(contains(big.err, " of cuda memory (")) << big.err;
  EXPECT_EQ(std::count(big.err.begin(), big.err.end(), '\n'), 1) << big.err;

  // Greedy generation: the same text, with the KV cache on the device.
  std::string text[2];
  for (int d = 0; d < 2; ++d) {
    const std::string device = d ? "cuda" : "cpu";
    const CliRun r = run("generate --checkpoint " + checkpoint +
                         " --prompt 'The ship' --temperature 0 --max-tokens 12 --device " + device);
    ASSERT_EQ(r.status, 0) << r.err;
    text[d] = r.out.substr(0, r.out.find('\n'));
    EXPECT_TRUE(contains(r.out + r.err, "device " + device)) << r.out << r.err;
  }
  EXPECT_EQ(text[1], text[0]);
  EXPECT_GT(text[0].size(), std::string("The ship").size());
}

// "text<TAB>label" rows: filler words and one word of the label's kind.
std::string labelled_rows(int rows, uint64_t seed) {
  const std::vector<std::string> filler = {"the", "day", "was", "a", "very", "man", "house"},
                                 good = {"good", "fine", "great"}, bad = {"bad", "awful", "poor"};
  const ecmoe::Rng rng(seed, 0);
  uint64_t k = 0;
  std::string text = "text\tlabel\n";
  for (int i = 0; i < rows; ++i) {
    const bool positive = rng.below(k++, 2) == 1;
    const auto& kind = positive ? good : bad;
    const int at = int(rng.below(k++, 5));
    for (int w = 0; w < 5; ++w)
      text += (w ? " " : "") +
              (w == at ? kind[rng.below(k++, kind.size())] : filler[rng.below(k++, filler.size())]);
    text += std::string(" .\t") + (positive ? "pos" : "neg") + "\n";
  }
  return text;
}

TEST_F(CudaCli, FinetuneAndPredictOnTheDeviceAsOnTheCpu) {
  train("pre", "encoder", "cpu");
  ecmoe::train_test::write_text(dir / "train.tsv", labelled_rows(80, 1));
  ecmoe::train_test::write_text(dir / "dev.tsv", labelled_rows(24, 2));
  nlohmann::json result[2];
  for (int d = 0; d < 2; ++d) {
    const std::string device = d ? "cuda" : "cpu";
    const CliRun r =
        run("finetune --checkpoint " + (dir / "pre/checkpoint.safetensors") + " --train " +
            (dir / "train.tsv") + " --dev " + (dir / "dev.tsv") + " --set steps=6 --json --out " +
            (dir / ("ft-" + device)) + " --device " + device);
    ASSERT_EQ(r.status, 0) << device << ": " << r.err;
    result[d] = nlohmann::json::parse(r.out);
    EXPECT_EQ(result[d]["device"], device);
  }
  ASSERT_EQ(result[1]["history"].size(), result[0]["history"].size());
  ASSERT_FALSE(result[0]["history"].empty());
  for (std::size_t i = 0; i < result[0]["history"].size(); ++i)
    expect_relative(result[1]["history"][i]["train_loss"], result[0]["history"][i]["train_loss"],
                    "finetune history " + std::to_string(i));
  EXPECT_EQ(result[1]["dev"]["confusion"], result[0]["dev"]["confusion"]);

  // The GPU's fine-tuned model predicted on both: the same labels and probabilities.
  ecmoe::train_test::write_text(dir / "texts.tsv", labelled_rows(12, 3));
  std::vector<nlohmann::json> rows[2];
  for (int d = 0; d < 2; ++d) {
    const CliRun r =
        run("predict --checkpoint " + (dir / "ft-cuda/model.safetensors") + " --input " +
            (dir / "texts.tsv") + " --json --device " + (d ? "cuda" : "cpu"));
    ASSERT_EQ(r.status, 0) << r.err;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);)
      rows[d].push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(rows[0].size(), 12u);
  ASSERT_EQ(rows[1].size(), rows[0].size());
  for (std::size_t i = 0; i < rows[0].size(); ++i) {
    EXPECT_EQ(rows[1][i]["predicted"], rows[0][i]["predicted"]) << i;
    for (const char* label : {"pos", "neg"})  // printed to 6 decimals
      EXPECT_NEAR(rows[1][i]["probabilities"][label].get<double>(),
                  rows[0][i]["probabilities"][label].get<double>(), 2e-6)
          << i;
  }
}

TEST_F(CudaCli, BenchTrainReportsTheDeviceItsMemoryAndWhereAStepGoes) {
  const CliRun r =
      run("bench train --device cuda --config tiny --steps 2 --warmup 1 --profile-steps 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["device"], "cuda");
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);
  const auto& memory = j["device_memory_bytes"];
  EXPECT_GT(memory["free_at_start"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(
      memory["total"].get<double>(),
      memory["training_state"].get<double>() + memory["activations_and_scratch"].get<double>());
  // The classes share the profiled step out whole; the ops are the classes' parts.
  const auto& profile = j["profile"];
  const double step = profile["step_seconds"].get<double>();
  double classes = 0, ops = 0;
  for (const auto& [name, seconds] : profile["seconds_per_step_by_class"].items())
    classes += seconds.get<double>();
  for (const auto& [name, seconds] : profile["seconds_per_step_by_op"].items())
    ops += seconds.get<double>();
  EXPECT_GT(step, 0.0);
  EXPECT_NEAR(classes, step, 1e-9 + 1e-6 * step);
  EXPECT_NEAR(ops + profile["seconds_per_step_by_class"]["host and other"].get<double>(), step,
              1e-9 + 1e-6 * step);
}

}  // namespace
