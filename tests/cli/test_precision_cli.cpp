// `precision` through the real binary: `--set precision=bf16` trains and is recorded in the run's
// config and metrics; the fp32 checkpoint of a bf16 run resumes in fp32 and the other way round;
// `bench train` and `bench layer` take it and report it (bench layer with its phase breakdown).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "core/precision.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::cli_test::run_ecmoe;

// The "precision" of every "start" record of a metrics file, in order.
std::vector<std::string> start_precisions(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["type"] == "start") out.push_back(j.value("precision", "missing"));
  }
  return out;
}

class PrecisionCli : public ecmoe::cli_test::CliDataTest {
 protected:
  PrecisionCli() : CliDataTest("precision-cli") {}
};

}  // namespace

TEST_F(PrecisionCli, Bf16TrainsRecordsAndResumesEitherWay) {
  const std::string out = dir / "run";
  const std::string base =
      "train --config tiny --set data.dir=" + (dir / "data") + " --set eval.batches=1 --out " + out;
  const CliRun bf16 = run(base + " --set precision=bf16 --set steps=4");
  ASSERT_EQ(bf16.status, 0) << bf16.out << bf16.err;
  std::ifstream config(out + "/config.json");
  EXPECT_EQ(nlohmann::json::parse(config)["precision"], "bf16");
  // A resumed run may change the precision (parameters and moments are fp32 either way).
  const CliRun fp32 = run("train --resume --out " + out + " --set steps=6 --set precision=fp32");
  ASSERT_EQ(fp32.status, 0) << fp32.out << fp32.err;
  EXPECT_TRUE(contains(fp32.out, "trained steps 4..6")) << fp32.out;
  const CliRun back = run("train --resume --out " + out + " --set steps=7 --set precision=bf16");
  ASSERT_EQ(back.status, 0) << back.out << back.err;
  EXPECT_EQ(start_precisions(out + "/metrics.jsonl"),
            (std::vector<std::string>{"bf16", "fp32", "bf16"}));

  const CliRun bad = run(base + "2 --set precision=fp16");
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.err, "unknown precision 'fp16' (expected fp32, bf16 or auto)"))
      << bad.err;
}

// bench layer reports what decides capped expert choice's cost: its solver's sweeps and residual
// (expert choice has none).
TEST_F(PrecisionCli, BenchLayerReportsTheCappedSolver) {
  const std::string shape =
      "bench layer --tokens 256 --d-model 32 --d-ff 64 --experts 4 "
      "--repeats 1 --warmup 0 --json --router ";
  const CliRun capped = run(shape + "expert_choice_capped --cap 2");
  ASSERT_EQ(capped.status, 0) << capped.out << capped.err;
  const auto c = nlohmann::json::parse(capped.out);
  EXPECT_GT(c["solver_iterations"].get<int>(), 0);
  EXPECT_GE(c["solver_residual"].get<double>(), 0.0);
  EXPECT_LE(c["max_experts_per_token"].get<int>(), 2);
  const CliRun plain = run(shape + "expert_choice");
  ASSERT_EQ(plain.status, 0) << plain.out << plain.err;
  EXPECT_FALSE(nlohmann::json::parse(plain.out).contains("solver_iterations"));
}

TEST_F(PrecisionCli, BenchesTakeThePrecision) {
  const CliRun train = run(
      "bench train --config tiny --steps 2 --warmup 0 --json --set precision=bf16 --set data.dir=" +
      (dir / "not-prepared"));
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  const auto t = nlohmann::json::parse(train.out);
  EXPECT_EQ(t["precision"], "bf16");
  EXPECT_GT(t["tokens_per_second"].get<double>(), 0.0);

  const CliRun layer =
      run("bench layer --tokens 256 --d-model 32 --d-ff 64 --experts 4 --repeats 2 --warmup 1 "
          "--precision bf16 --json");
  ASSERT_EQ(layer.status, 0) << layer.out << layer.err;
  const auto l = nlohmann::json::parse(layer.out);
  EXPECT_EQ(l["precision"], "bf16");
  EXPECT_GT(l["ms"].get<double>(), 0.0);
  // The breakdown: every phase, the GEMM ones (GELU fused in) and the rest adding up to it.
  double sum = 0;
  for (const auto& [phase, ms] : l["phases_ms"].items()) sum += ms.get<double>();
  for (const char* phase : {"router", "routing", "weights to bf16", "dispatch",
                            "gemm x_in*W1 + gelu", "gemm hidden*W2", "combine", "combine adjoint",
                            "gemm d_out*W2^T + gelu'", "gemm d_pre*W1^T", "dispatch adjoint"})
    EXPECT_TRUE(l["phases_ms"].contains(phase)) << phase << " missing in " << l["phases_ms"];
  EXPECT_GT(l["layer_gemm_ms"].get<double>(), 0.0);
  EXPECT_NEAR(l["layer_gemm_ms"].get<double>() + l["layer_outside_gemm_ms"].get<double>(), sum,
              1e-9 * sum);
  // auto: what this machine runs natively, named as such in the report.
  const CliRun native =
      run("bench layer --tokens 256 --d-model 32 --d-ff 64 --experts 4 --repeats 1 --warmup 0 "
          "--precision auto --json");
  ASSERT_EQ(native.status, 0) << native.out << native.err;
  EXPECT_EQ(nlohmann::json::parse(native.out)["precision"],
            ecmoe::precision_name(ecmoe::native_precision()));
  const CliRun bad = run("bench layer --tokens 64 --precision fp8");
  EXPECT_NE(bad.status, 0);
}

// --device cuda in a build without the CUDA backend (or on a machine without a GPU): one line
// naming why, exit status 1; an unknown device is refused by the option's check.
TEST_F(PrecisionCli, BenchLayerDeviceCudaSaysWhyItCannot) {
  const CliRun cuda = run("bench layer --tokens 64 --d-model 16 --d-ff 32 --device cuda");
  EXPECT_EQ(cuda.status, 1);
  EXPECT_NE(cuda.err.find("cuda"), std::string::npos) << cuda.err;
  EXPECT_EQ(std::count(cuda.err.begin(), cuda.err.end(), '\n'), 1) << cuda.err;
  const CliRun tpu = run("bench layer --tokens 64 --device tpu");
  EXPECT_NE(tpu.status, 0);
}

// `finetune --precision bf16` fine-tunes with bf16 GEMMs (the training losses differ from an fp32
// run's with the same seed) and records it in the JSON result, config.json and result.json; the
// config key takes the same values, and a bad one is a one-line error.
TEST(PrecisionCliFinetune, FinetuneTakesAndRecordsThePrecision) {
  TempDir dir("precision-ft");
  ASSERT_EQ(ecmoe::cli_test::pretrain_tiny_encoder(dir, 4), "");
  std::string tsv = "text\tlabel\n";
  for (int i = 0; i < 60; ++i)
    tsv += i % 2 ? "the whale and the ship .\t1\n" : "the king of the city .\t0\n";
  ecmoe::train_test::write_text(dir / "task.tsv", tsv);
  const auto finetune = [&](const std::string& extra, const std::string& out) {
    return run_ecmoe("finetune --checkpoint " + (dir / "pre/checkpoint.safetensors") + " --train " +
                         (dir / "task.tsv") +
                         " --set steps=4 --set eval_interval=2 --seed 3 --json --out " +
                         (dir / out) + extra,
                     dir / "stderr.txt");
  };
  const CliRun fp32 = finetune("", "fp32");
  ASSERT_EQ(fp32.status, 0) << fp32.err;
  const CliRun bf16 = finetune(" --precision bf16", "bf16");
  ASSERT_EQ(bf16.status, 0) << bf16.err;
  const auto j32 = nlohmann::json::parse(fp32.out), j16 = nlohmann::json::parse(bf16.out);
  EXPECT_EQ(j32["precision"], "fp32");
  EXPECT_EQ(j16["precision"], "bf16");
  const auto read_json = [&](const std::string& path) {
    return nlohmann::json::parse(ecmoe::train_test::read_text(dir / path));
  };
  EXPECT_EQ(read_json("bf16/config.json")["precision"], "bf16");
  EXPECT_EQ(read_json("bf16/result.json")["precision"], "bf16");
  EXPECT_EQ(read_json("fp32/config.json")["precision"], "fp32");
  EXPECT_NE(j32["history"][0]["train_loss"].get<double>(),
            j16["history"][0]["train_loss"].get<double>());

  const CliRun by_key = finetune(" --set precision=bf16", "by-key");
  ASSERT_EQ(by_key.status, 0) << by_key.err;
  EXPECT_EQ(nlohmann::json::parse(by_key.out)["history"], j16["history"]);
  const CliRun bad = finetune(" --set precision=fp16", "bad");
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.err, "unknown precision 'fp16' (expected fp32, bf16 or auto)"))
      << bad.err;
  EXPECT_NE(finetune(" --precision fp16", "bad2").status, 0);
}

// `compare --precision bf16` gives every run of the suite `precision=bf16` (what --list shows is
// what the runs get), and refuses other values.
TEST(PrecisionCliCompare, ComparePassesThePrecisionToEveryRun) {
  TempDir dir("precision-compare");
  const CliRun list =
      run_ecmoe("compare --quick --precision bf16 --set steps=3 --list", dir / "stderr.txt");
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_TRUE(contains(list.out, "every run also: steps=3 precision=bf16")) << list.out;
  const CliRun plain = run_ecmoe("compare --quick --list", dir / "stderr.txt");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_FALSE(contains(plain.out, "precision=")) << plain.out;
  EXPECT_NE(run_ecmoe("compare --quick --precision fp8 --list", dir / "stderr.txt").status, 0);
}
