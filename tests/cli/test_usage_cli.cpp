// The command line's own errors through the real binary: a usage error is one line and exit
// status 1 (--help stays 0), an unknown command is an error even with --help, --threads is
// bounded, --set refuses NaN, data.dir must be a folder, sizes that cannot fit in memory fail
// at once naming the key, and OpenMP's wait policy defaults to passive.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;

class UsageCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY))
        << ECMOE_BINARY << " is missing: build the ecmoe target before the tests";
  }
  // `env` first: ENV are assignments or -u NAME for env(1).
  CliRun run(const std::string& args, const std::string& env = "") {
    return ecmoe::cli_test::run_command("env " + env + " " + ECMOE_BINARY + " " + args,
                                        dir / "stderr.txt");
  }
  // Exit status 1, one line "ecmoe: error: ..." holding every fragment, no runaway number, and
  // no more than `seconds` of wall time.
  void expect_error(const std::string& args, const std::vector<std::string>& fragments,
                    double seconds = 30) {
    const auto t0 = std::chrono::steady_clock::now();
    const CliRun r = run(args);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_EQ(r.err.rfind("ecmoe: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << args << ": not one line: " << r.err;
    EXPECT_FALSE(std::regex_search(r.err, std::regex("[0-9]{20}"))) << r.err;
    for (const auto& f : fragments)
      EXPECT_TRUE(contains(r.err, f)) << args << ": expected '" << f << "' in: " << r.err;
    EXPECT_LT(took, seconds) << args << " took " << took << " s";
  }
  TempDir dir{"usage-cli"};
};

TEST_F(UsageCli, HelpExitsZero) {
  for (const char* args : {"--help", "train --help", "bench layer --help", "-h"}) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
    EXPECT_TRUE(contains(r.out, "Usage")) << args;
  }
}

TEST_F(UsageCli, UnknownCommandIsAnErrorEvenWithHelp) {
  expect_error("trian --help", {"unknown command 'trian'", "did you mean 'train'?",
                                "commands: info, bench, prepare, train, eval"});
  expect_error("trian", {"unknown command 'trian'"});
  expect_error("--threads 2 evl", {"unknown command 'evl'", "did you mean 'eval'?"});
  expect_error("bench lyer --help",
               {"unknown command 'bench lyer'", "did you mean 'layer'?", "layer, train"});
  expect_error("zzzzzzzzzz", {"unknown command 'zzzzzzzzzz'; commands: "});
}

TEST_F(UsageCli, UsageErrorsExitOneOnOneCompactLine) {
  // CLI11's range checks used to print the largest double in full and exit 105-114.
  expect_error("--threads -1 info", {"--threads", "must be >= 0, got -1"});
  expect_error("eval --checkpoint x --batch-size 0", {"--batch-size", "must be positive, got 0"});
  expect_error("eval --checkpoint x --batch-size -5", {"--batch-size", "must be positive"});
  expect_error("train --out a --out b", {"--out"});
  expect_error("info --no-such-option", {"--no-such-option"});
  expect_error("--threads many info", {"--threads", "many"});
  expect_error("", {"subcommand"});
}

TEST_F(UsageCli, ThreadsAreBounded) {
  // 100000 crashed the OpenMP runtime and 20000 hung it.
  expect_error("--threads 100000 info", {"--threads 100000 is too many: at most "}, 10);
  expect_error("--threads 20000 info", {"--threads 20000", "at most"}, 10);
  const auto t0 = std::chrono::steady_clock::now();
  const CliRun r = run("info", "OMP_NUM_THREADS=100000");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "OMP_NUM_THREADS=100000 is too many")) << r.err;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10);
}

TEST_F(UsageCli, SetRefusesNonFiniteNumbers) {
  expect_error("train --config tiny --set schedule.peak_lr=nan --out " + (dir / "run"),
               {"--set schedule.peak_lr", "'nan' is not a finite number"});
  expect_error("train --config tiny --set model.moe.jitter=inf --out " + (dir / "run"),
               {"'inf' is not a finite number"});
}

TEST_F(UsageCli, DataDirThatIsAFileSaysSo) {
  std::ofstream(dir / "afile") << "not a folder\n";
  expect_error("train --config tiny --set data.dir=" + (dir / "afile") + " --out " + (dir / "run"),
               {"data folder '" + (dir / "afile") + "' is a file, not a folder"});
  expect_error("train --config tiny --set data.dir=" + (dir / "none") + " --out " + (dir / "run"),
               {"data folder '" + (dir / "none") + "' does not exist"});
}

// Sizes that cannot fit used to end in "internal error: std::bad_alloc" (n_layers after 33 s).
TEST_F(UsageCli, SizesThatCannotFitFailAtOnceNamingTheKey) {
  const std::string bench = "bench train --config tiny --steps 1 --warmup 0 --set ";
  expect_error(bench + "model.seq_len=1000000000", {"model.seq_len=1000000000 needs ", "available"},
               3);
  expect_error(bench + "batch_size=2147483647", {"batch_size=2147483647 needs "}, 3);
  expect_error(bench + "model.d_model=1048576", {"model.d_model=1048576 needs "}, 3);
  expect_error(bench + "model.moe.n_experts=10000000", {"model.moe.n_experts=10000000 needs "}, 3);
  expect_error(bench + "model.n_layers=1000000", {"model.n_layers=1000000 needs "}, 3);
  expect_error("bench layer --d-model 1000000 --repeats 1 --warmup 0",
               {"bench layer", "--d-model 1000000", "needs ", "available"}, 3);

  // train and eval, on real data and a real checkpoint.
  ecmoe::train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  const std::string data = " --set data.dir=" + (dir / "data");
  expect_error(
      "train --config tiny" + data + " --set model.n_layers=1000000 --out " + (dir / "big"),
      {"model.n_layers=1000000 needs ", "parameters ", "AdamW moments "}, 3);
  EXPECT_FALSE(std::filesystem::exists(dir / "big/checkpoint.safetensors"));
  const std::string out = dir / "run";
  const CliRun train =
      run("train --config tiny" + data + " --set steps=1 --set eval.batches=1 --out " + out);
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  expect_error("eval --checkpoint " + out + "/checkpoint.safetensors --batch-size 2000000000",
               {"--batch-size=2000000000 needs ", "activations "}, 3);
}

TEST_F(UsageCli, WaitPolicyDefaultsToPassiveUnlessTheUserChose) {
  const std::string clean = "-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u ECMOE_WAIT_POLICY_SET";
  const CliRun ours = run("--threads 1 info", clean);
  ASSERT_EQ(ours.status, 0) << ours.err;
  EXPECT_TRUE(contains(ours.out, "openmp wait:  OMP_WAIT_POLICY=passive (ecmoe's default)"))
      << ours.out;
  const CliRun theirs = run("--threads 1 info", clean + " OMP_WAIT_POLICY=active");
  ASSERT_EQ(theirs.status, 0) << theirs.err;
  EXPECT_TRUE(contains(theirs.out, "openmp wait:  OMP_WAIT_POLICY=active (from the environment)"))
      << theirs.out;
}

}  // namespace
