// `ecmoe bench attention --device cuda` through the real binary: it runs the op on the device,
// on the path training would take (flash in bf16, cuBLAS in fp32 or with
// ECMOE_CUDA_ATTENTION=cublas), and says which in its report.
#include <gtest/gtest.h>

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

}  // namespace
