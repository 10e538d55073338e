// The benchmarks' --device cuda forms through the real binary:
// - `bench attention` runs the op on the device, on the path training would take (flash in bf16,
//   cuBLAS in fp32 or with ECMOE_CUDA_ATTENTION=cublas), and says which in its report;
// - `bench layer` runs the MoE layer and its roofline there, every router, and refuses a shape
//   that does not fit the device's memory in one line before it allocates.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "../cli/cli_test_util.h"
#include "cuda_test_util.h"

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::run_command;
using ecmoe::train_test::TempDir;

TEST(CudaBenchAttention, RunsOnTheDeviceOnThePathTrainingTakes) {
  ECMOE_REQUIRE_GPU();
  const TempDir dir("cuda-bench-attention");
  struct Case {
    const char* env;
    const char* precision;
    bool causal;
    const char* path;
  };
  for (const Case& c : {Case{"", "bf16", false, "flash"}, Case{"", "bf16", true, "flash"},
                        Case{"ECMOE_CUDA_ATTENTION=cublas", "bf16", true, "cublas"},
                        Case{"", "fp32", false, "cublas"}}) {
    const std::string args =
        std::string(
            " bench attention --device cuda --batch 2 --heads 2 --seq 40 --head-dim 16 "
            "--repeats 1 --warmup 0 --json --precision ") +
        c.precision + (c.causal ? " --causal" : "");
    const CliRun r =
        run_command("env " + std::string(c.env) + " " + ECMOE_BINARY + args, dir / "stderr.txt");
    ASSERT_EQ(r.status, 0) << c.env << args << "\n" << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["device"], "cuda");
    EXPECT_EQ(j["path"], c.path) << c.env << args;
    EXPECT_EQ(j["precision"], c.precision);
    EXPECT_GT(j["ms"].get<double>(), 0.0);
  }
}

TEST(CudaBenchLayer, RunsTheLayerAndItsRooflineOnTheDevice) {
  ECMOE_REQUIRE_GPU();
  const TempDir dir("cuda-bench-layer");
  struct Case {
    const char* router;
    const char* precision;
  };
  // Capped expert choice once: its solver takes seconds on the emulation.
  for (const auto& [router, precision] :
       {Case{"expert_choice", "bf16"}, Case{"expert_choice", "fp32"}, Case{"top2", "bf16"},
        Case{"expert_choice_capped", "fp32"}}) {
    const std::string args =
        std::string(
            " bench layer --device cuda --tokens 96 --d-model 16 --d-ff 32 --experts 4 "
            "--repeats 2 --warmup 1 --square-gemm 48 --copy-mb 1 --json --router ") +
        router + " --precision " + precision;
    const CliRun r = run_command(ECMOE_BINARY + args, dir / "stderr.txt");
    ASSERT_EQ(r.status, 0) << args << "\n" << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["device"], "cuda");
    EXPECT_EQ(j["router"], router);
    EXPECT_EQ(j["square_gemm"], 48);
    for (const char* key : {"ms", "forward_ms", "backward_ms", "expert_gemm_tflops",
                            "cublas_square_tflops", "copy_gbps", "dispatch_combine_bytes"})
      EXPECT_GT(j[key].get<double>(), 0.0) << key << " " << args;
    // The halves are timed inside the same rounds as the whole.
    EXPECT_LE(j["forward_ms"].get<double>() + j["backward_ms"].get<double>(),
              1.5 * j["ms"].get<double>())
        << args;
    if (std::string(router) == "expert_choice") {
      EXPECT_EQ(j["slots"], 2 * 96) << args;
    }
    EXPECT_EQ(j.contains("solver_iterations"), std::string(router) == "expert_choice_capped");
    EXPECT_GT(j["phases_ms"]["routing"].get<double>(), 0.0) << args;
  }
}

TEST(CudaBenchLayer, RefusesAShapeThatDoesNotFitTheDeviceInOneLine) {
  ECMOE_REQUIRE_GPU();
  const TempDir dir("cuda-bench-layer-memory");
  const CliRun r = run_command(std::string(ECMOE_BINARY) +
                                   " bench layer --device cuda --tokens 4096 --d-model 65536 "
                                   "--d-ff 65536 --experts 64",
                               dir / "stderr.txt");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("bench layer (--tokens 4096, --d-model 65536, --d-ff 65536, --experts 64) "
                       "needs "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("of cuda memory (parameters "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GPU scratch"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
