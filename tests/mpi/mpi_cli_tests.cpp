// `mpirun ... ecmoe train / eval` end to end, on a data folder the test writes:
//   a checkpoint saved under 2 ranks evaluates the same under 1 and 4 ranks (routing counts
//   identical, loss to 1e-5: the per-rank sums are added in another order);
//   a run stopped and resumed under 2 ranks ends bit-identical to one that was never stopped;
//   ranks that disagree on the config, or one rank that fails, end the job with an error on
//   every rank instead of a hang (the test's timeout would catch a hang).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../cli/cli_test_util.h"
#include "model/transformer.h"
#include "train/checkpoint.h"

namespace {

using ecmoe::train_test::TempDir;

using ecmoe::cli_test::CliRun;

// `ranks` 0: the plain binary, no mpirun.
CliRun run(int ranks, const std::string& args, const std::string& err_file) {
  std::string command = ranks == 0 ? std::string(ECMOE_BINARY)
                                   : std::string(ECMOE_MPIRUN) +
                                         " --allow-run-as-root --oversubscribe -np " +
                                         std::to_string(ranks) + " " + ECMOE_BINARY;
  return ecmoe::cli_test::run_command(command + " " + args, err_file);
}

int count(const std::string& text, const std::string& fragment) {
  int n = 0;
  for (size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1))
    ++n;
  return n;
}

std::vector<float> checkpoint_params(const std::string& path) {
  const ecmoe::Checkpoint c = ecmoe::Checkpoint::open(path);
  ecmoe::Transformer model(c.config().model);
  ecmoe::FlatBuffer params(model.table());
  c.load_params(params);
  return std::vector<float>(params.data(), params.data() + params.size());
}

class MpiCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY)) << ECMOE_BINARY;
    ecmoe::train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  }
  CliRun ecmoe(int ranks, const std::string& args) { return run(ranks, args, dir / "stderr.txt"); }
  // tiny: 8 sequences of 32 per step; groups of 64 tokens = one rank's share under 4 ranks.
  std::string config() const {
    return "--config tiny --set data.dir=" + (dir / "data") +
           " --set model.moe.group_size=64 --set eval.interval=0 --set log_interval=1";
  }
  TempDir dir{"mpi-cli"};
};

TEST_F(MpiCli, SavedUnderTwoRanksEvaluatesTheSameUnderOneAndFour) {
  const std::string out = dir / "run";
  const CliRun train = ecmoe(2, "train " + config() + " --set steps=3 --out " + out);
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  EXPECT_EQ(count(train.out, "trained steps 0..3"), 1) << "only rank 0 reports: " << train.out;

  const std::string eval = "eval --checkpoint " + out + "/checkpoint.safetensors --json";
  std::vector<nlohmann::json> results;
  for (const int ranks : {0, 1, 4}) {
    const CliRun r = ecmoe(ranks, eval);
    ASSERT_EQ(r.status, 0) << ranks << " ranks: " << r.out << r.err;
    results.push_back(nlohmann::json::parse(r.out));
  }
  for (const auto& r : results) {
    EXPECT_NEAR(r["loss"].get<double>(), results[0]["loss"].get<double>(),
                1e-5 * results[0]["loss"].get<double>());
    EXPECT_EQ(r["targets"], results[0]["targets"]);
    for (size_t l = 0; l < r["moe_layers"].size(); ++l) {
      EXPECT_EQ(r["moe_layers"][l]["tokens_per_expert"],
                results[0]["moe_layers"][l]["tokens_per_expert"]);
      EXPECT_EQ(r["moe_layers"][l]["experts_per_token"],
                results[0]["moe_layers"][l]["experts_per_token"]);
    }
  }
}

TEST_F(MpiCli, ResumeUnderTwoRanksIsBitIdentical) {
  const std::string whole = dir / "whole", parts = dir / "parts";
  ASSERT_EQ(ecmoe(2, "train " + config() + " --set steps=4 --out " + whole).status, 0);
  ASSERT_EQ(ecmoe(2, "train " + config() + " --set steps=2 --out " + parts).status, 0);
  const CliRun resumed = ecmoe(2, "train --resume --out " + parts + " --set steps=4");
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_TRUE(checkpoint_params(whole + "/checkpoint.safetensors") ==
              checkpoint_params(parts + "/checkpoint.safetensors"));
}

// --time-limit under 2 ranks: rank 0's clock stops both at the same step (one report, a
// checkpoint), and the resumed run ends bit-identical to one never stopped.
TEST_F(MpiCli, TimeLimitStopsEveryRankAtTheSameStep) {
  const std::string whole = dir / "limit-whole", parts = dir / "limit-parts";
  ASSERT_EQ(ecmoe(2, "train " + config() + " --set steps=4 --out " + whole).status, 0);
  const CliRun stopped =
      ecmoe(2, "train " + config() + " --set steps=4 --out " + parts + " --time-limit 0.000001");
  ASSERT_EQ(stopped.status, 0) << stopped.out << stopped.err;
  EXPECT_EQ(count(stopped.out, "stopped by the time limit at step 1 of 4"), 1) << stopped.out;
  const CliRun resumed = ecmoe(2, "train --resume --out " + parts);
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_TRUE(checkpoint_params(whole + "/checkpoint.safetensors") ==
              checkpoint_params(parts + "/checkpoint.safetensors"));
}

TEST_F(MpiCli, DisagreeingRanksStopWithAnErrorOnEveryRank) {
  const std::string base = "train " + config() + " --out " + (dir / "mismatch");
  const CliRun r =
      ecmoe(1, base + " --set steps=3 : -np 1 " + ECMOE_BINARY + " " + base + " --set steps=4");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(count(r.err, "ranks disagree on the ecmoe version or the training config"), 2) << r.err;
}

TEST_F(MpiCli, OneFailingRankEndsTheJob) {
  // Rank 1 cannot open its data and fails before any collective; rank 0 waits in the first one.
  const std::string args = " --set steps=3 --out " + (dir / "failing");
  const CliRun r = ecmoe(1, "train " + config() + args + " : -np 1 " + ECMOE_BINARY + " train " +
                                config() + " --set data.dir=" + (dir / "missing") + args);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(count(r.err, "ecmoe: error (rank 1 of 2): data folder"), 1) << r.err;
}

TEST_F(MpiCli, ExpertsMustSplitOverTheRanks) {
  const CliRun r = ecmoe(
      3, "train " + config() + " --set batch_size=6 --set eval.batches=0 --out " + (dir / "three"));
  EXPECT_NE(r.status, 0);
  EXPECT_GE(count(r.err, "moe.n_experts (4) must be divisible by the number of MPI ranks (3)"), 1)
      << r.err;
}

TEST_F(MpiCli, CompareSuiteRunsOnTwoRanksAndKeepsFinishedRuns) {
  const std::string out = dir / "compare";
  const std::string args =
      "compare --suite paper-small --quick --out " + out + " --set data.dir=" + (dir / "data");
  const CliRun first = ecmoe(2, args);
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  EXPECT_EQ(count(first.out, "report: "), 1) << "rank 0 alone reports: " << first.out;
  const std::string report = ecmoe::train_test::read_text(out + "/report.md");
  EXPECT_NE(report.find("on each of 2 MPI ranks"), std::string::npos);
  for (const char* row : {"| EC c=2 |", "| top-2 |", "| EC-CAP b=2 |", "| hash |"})
    EXPECT_NE(report.find(row), std::string::npos) << row;
  const std::string metrics = ecmoe::train_test::read_text(out + "/ec-c2-s1/metrics.jsonl");
  EXPECT_NE(metrics.find("\"ranks\":2"), std::string::npos);
  const CliRun again = ecmoe(2, args);
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_GE(count(again.err, "done before, kept"), 10) << again.err;
}

// `bench layer` under two ranks: expert choice sends exactly the rows of the slots whose expert
// is on the other rank (each of the 4 experts takes c·n/e of a rank's n tokens; 2 are remote),
// forward and back and the adjoints of both: 4 · c · (1/2) · d floats per token.
TEST_F(MpiCli, BenchLayerCountsTheRowsSentToTheOtherRank) {
  const CliRun r = ecmoe(2,
                         "bench layer --tokens 256 --d-model 32 --d-ff 64 --experts 4 "
                         "--capacity-factor 2 --repeats 3 --warmup 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(j["ranks"], 2);
  EXPECT_EQ(j["tokens_per_rank"], 256);
  EXPECT_DOUBLE_EQ(j["bytes_sent_per_token"].get<double>(), 4 * 2 * 0.5 * 32 * 4);
  EXPECT_GT(j["all_to_all_ms"].get<double>(), 0.0);
  EXPECT_GT(j["ms"].get<double>(), 0.0);
}

TEST_F(MpiCli, CommandsThatAreNotParallelRefuseMpirun) {
  const CliRun r = ecmoe(2, "calibrate --checkpoint " + (dir / "none.safetensors"));
  EXPECT_NE(r.status, 0);
  EXPECT_GE(count(r.err, "`ecmoe calibrate` runs in one process: start it without mpirun"), 1)
      << r.err;
}

}  // namespace
