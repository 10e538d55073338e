// `ecmoe bench attention` through the real binary on the CPU: its JSON report (the shape, the
// path, FLOPs counted as FlashAttention's convention has them, rates that follow from the times),
// and its one-line errors (sizes, memory, a device this build lacks).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;

class BenchAttentionCli : public ::testing::Test {
 protected:
  CliRun run(const std::string& args) {
    return ecmoe::cli_test::run_ecmoe("bench attention " + args, dir / "stderr.txt");
  }
  TempDir dir{"bench-attention-cli"};
};

TEST_F(BenchAttentionCli, ReportsTimesAndCountedFlops) {
  for (const bool causal : {false, true}) {
    const CliRun r =
        run("--batch 3 --heads 2 --seq 20 --head-dim 16 --repeats 3 --warmup 1 "
            "--precision bf16 --json" +
            std::string(causal ? " --causal" : ""));
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["device"], "cpu");
    EXPECT_EQ(j["path"], "cpu");
    EXPECT_EQ(j["precision"], "bf16");
    EXPECT_EQ(j["causal"], causal);
    EXPECT_EQ(j["batch"], 3);
    EXPECT_EQ(j["seq"], 20);
    // 4·head_dim FLOPs per visible pair and head: 400 pairs, or the triangle's 210.
    const double pairs = causal ? 210 : 400;
    EXPECT_DOUBLE_EQ(j["forward_flops"].get<double>(), 4 * pairs * 16 * 3 * 2);
    EXPECT_DOUBLE_EQ(j["backward_flops"].get<double>(), 2.5 * j["forward_flops"].get<double>());
    for (const char* key : {"ms", "forward_ms", "backward_ms"})
      EXPECT_GT(j[key].get<double>(), 0.0) << key;
    EXPECT_NEAR(j["forward_tflops"].get<double>(),
                j["forward_flops"].get<double>() / j["forward_ms"].get<double>() * 1e-9,
                1e-9 * j["forward_tflops"].get<double>());
  }
  const CliRun text = run("--batch 1 --heads 1 --seq 8 --head-dim 8 --repeats 1 --warmup 0");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_TRUE(contains(text.out, "attention on cpu (cpu path)")) << text.out;
  EXPECT_TRUE(contains(text.out, "TFLOP/s")) << text.out;
}

TEST_F(BenchAttentionCli, BadSizesAreOneLineErrors) {
  const auto expect_error = [&](const std::string& args, const std::string& fragment) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << args << ": not one line: " << r.err;
    EXPECT_TRUE(contains(r.err, fragment))
        << args << ": expected '" << fragment << "' in " << r.err;
  };
  expect_error("--heads 0", "must be positive");
  expect_error("--batch 100000 --seq 100000", "below 2^31 elements");
  // The probabilities alone would be 4 x (4·10^5)^2 floats: 2.6 TB.
  expect_error("--batch 1 --seq 400000", "of memory, more than the");
#ifndef ECMOE_HAVE_CUDA
  expect_error("--device cuda", "built without the CUDA backend");
#endif
}

}  // namespace
