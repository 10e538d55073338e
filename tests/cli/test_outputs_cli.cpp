// Output folders through the real binary: problems with --out fail before any work; two runs on
// one folder fail the second naming the first; resuming a finished run is a note, not a second
// evaluation line; --batches beyond the split is capped; train says what to run next.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;

int count_lines_with(const std::string& path, const std::string& fragment) {
  const std::string text = ecmoe::train_test::read_text(path);
  int n = 0;
  for (std::size_t at = text.find(fragment); at != std::string::npos;
       at = text.find(fragment, at + 1))
    ++n;
  return n;
}

class OutputsCli : public ecmoe::cli_test::CliDataTest {
 protected:
  OutputsCli() : CliDataTest("outputs-cli") {}
  // Exit 1 with one line naming `fragment`.
  void expect_error(const CliRun& r, const std::string& fragment) {
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "ecmoe: error: " + fragment))
        << "expected '" << fragment << "' in: " << r.err;
    const std::size_t at = r.err.rfind("ecmoe: error: ");
    if (at != std::string::npos) {
      const std::string last = r.err.substr(at);
      EXPECT_EQ(last.find('\n'), last.size() - 1) << "not one line: " << last;
    }
  }
  std::string train_args(const std::string& out) {
    return "train --config tiny --set data.dir=" + (dir / "data") + " --out " + out;
  }
};

}  // namespace

TEST_F(OutputsCli, TrainOutThatIsAFileOrEmptyFailsAtOnce) {
  ecmoe::train_test::write_text(dir / "a-file", "x");
  expect_error(run(train_args(dir / "a-file")),
               "output folder (--out) '" + (dir / "a-file") + "' exists and is not a folder");
  // An empty --out is a mistake, not a request for the config's `out`.
  expect_error(run("train --config tiny --set data.dir=" + (dir / "data") +
                   " --set out=" + (dir / "from-config") + " --out ''"),
               "--out is empty");
  EXPECT_FALSE(std::filesystem::exists(dir / "from-config"));
}

TEST_F(OutputsCli, SecondRunOnTheSameFolderFailsNamingTheFirst) {
  const std::string out = dir / "run";
  const pid_t first = ::fork();
  if (first == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    const std::string data = "data.dir=" + (dir / "data");
    ::execl(ECMOE_BINARY, ECMOE_BINARY, "train", "--config", "tiny", "--set", data.c_str(), "--set",
            "steps=1000000", "--set", "checkpoint_interval=0", "--out", out.c_str(),
            (char*)nullptr);
    ::_exit(127);
  }
  // The first run is under way once it logs its start.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!contains(ecmoe::train_test::read_text(out + "/metrics.jsonl"), "\"start\"") &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const CliRun second = run(train_args(out) + " --set steps=5");
  expect_error(second, "output folder '" + out + "' is in use by another run (pid " +
                           std::to_string(first) + " on ");
  EXPECT_TRUE(contains(second.err, "train --config tiny")) << second.err;  // the holder's command
  ::kill(first, SIGKILL);
  int status = 0;
  ::waitpid(first, &status, 0);
  // A killed holder leaves no lock behind.
  const CliRun third = run(train_args(out) + " --set steps=5");
  EXPECT_EQ(third.status, 0) << third.out << third.err;
}

TEST_F(OutputsCli, ResumingAFinishedRunSaysSoAndLogsNothingTwice) {
  const std::string out = dir / "run";
  const CliRun train = run(train_args(out));
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  const std::string ckpt = out + "/checkpoint.safetensors";
  EXPECT_TRUE(contains(train.out, "next: ecmoe eval --checkpoint " + ckpt + "\n")) << train.out;
  EXPECT_TRUE(contains(train.out, "ecmoe finetune --checkpoint " + ckpt)) << train.out;
  const std::string metrics = out + "/metrics.jsonl";
  const int evals = count_lines_with(metrics, "\"type\":\"eval\"");
  const int starts = count_lines_with(metrics, "\"type\":\"start\"");
  ASSERT_EQ(evals, 2);  // steps 10 and 20

  const CliRun again = run("train --resume --out " + out);
  EXPECT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_TRUE(contains(again.out, "nothing to train: " + out + " is already at step 20 = steps"))
      << again.out;
  EXPECT_TRUE(contains(again.out, "validation loss ")) << again.out;
  EXPECT_EQ(count_lines_with(metrics, "\"type\":\"eval\""), evals);
  EXPECT_EQ(count_lines_with(metrics, "\"type\":\"start\""), starts);

  expect_error(run("train --resume --out " + out + " --set steps=10"),
               "the checkpoint in " + out + " is already at step 20, past steps = 10");
}

TEST_F(OutputsCli, BatchesBeyondTheSplitAreCappedWithANote) {
  const std::string out = dir / "run";
  // val holds 3000 tokens: 94 windows of 32 cover it, 12 batches of 8. `timeout`: without the cap
  // these would run for days.
  const CliRun train =
      ecmoe::cli_test::run_command("timeout 120 " ECMOE_BINARY " " + train_args(out) +
                                       " --set steps=2 --set eval.batches=1000000000",
                                   dir / "stderr.txt");
  ASSERT_EQ(train.status, 0) << train.out << train.err;
  EXPECT_TRUE(contains(train.err,
                       "eval.batches 1000000000 is more than the val split holds "
                       "(3000 tokens, covered by 12 batches of 8 windows): "
                       "evaluating 12"))
      << train.err;
  const std::string ckpt = " --checkpoint " + out + "/checkpoint.safetensors";
  const auto timed = [&](const std::string& args) {
    return ecmoe::cli_test::run_command("timeout 120 " ECMOE_BINARY " " + args, dir / "stderr.txt");
  };
  const CliRun eval = timed("eval" + ckpt + " --batches 1000000000 --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_TRUE(contains(eval.err, "--batches 1000000000 is more than the val split holds"))
      << eval.err;
  const CliRun calibrate = timed("calibrate" + ckpt + " --batches 1000000000");
  ASSERT_EQ(calibrate.status, 0) << calibrate.err;
  EXPECT_TRUE(contains(calibrate.err, "evaluating 12")) << calibrate.err;
  EXPECT_TRUE(contains(calibrate.out, "on 12 batches")) << calibrate.out;
}

TEST(OutputsCliFinetune, OutThatIsAFileFailsBeforeTraining) {
  ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY));
  TempDir dir("outputs-ft");
  ASSERT_EQ(ecmoe::cli_test::pretrain_tiny_encoder(dir, 2), "");
  std::string tsv = "sentence\tlabel\n";
  for (int i = 0; i < 200; ++i)
    tsv += std::string(i % 2 ? "the whale ." : "the king .") + "\t" + std::to_string(i % 2) + "\n";
  ecmoe::train_test::write_text(dir / "sst/train.tsv", tsv);
  ecmoe::train_test::write_text(dir / "sst/dev.tsv", tsv);
  ecmoe::train_test::write_text(dir / "a-file", "x");
  // Without the check this trains for 10^6 steps first; `timeout` bounds the test then.
  const std::string ft =
      "timeout 120 " ECMOE_BINARY " finetune --checkpoint " + (dir / "pre/checkpoint.safetensors") +
      " --task glue:sst2:" + (dir / "sst") + " --set steps=1000000 --set patience=0";
  for (const auto& [out, fragment] :
       {std::pair{dir / "a-file",
                  "finetune --out '" + (dir / "a-file") + "' exists and is not a folder"},
        std::pair{std::string("''"), std::string("--out is empty")}}) {
    const CliRun r = ecmoe::cli_test::run_command(ft + " --out " + out, dir / "stderr.txt");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(contains(r.err, "ecmoe: error: " + fragment)) << r.err;
  }
}
