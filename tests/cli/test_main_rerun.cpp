// scripts/train-or-resume.sh, the last step of scripts/main.sh, through the real binary: a first
// run trains, a rerun of an interrupted run resumes it, a rerun of a finished run prints its
// evaluation and changes nothing, and the user's --out is the only one passed.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::cli_test::run_command;
namespace fs = std::filesystem;

const std::string kRoot = fs::path(ECMOE_FIXTURE_DIR).parent_path().parent_path().string();

class MainRerun : public ecmoe::cli_test::CliDataTest {
 protected:
  MainRerun() : CliDataTest("main-rerun") {}
  // The script run from the temporary folder (runs/tiny, the config's own out, lands there).
  CliRun script(const std::string& args) {
    return run_command("cd " + dir.str() + " && ECMOE=" + ECMOE_BINARY + " " + kRoot +
                           "/scripts/train-or-resume.sh --config tiny --set data.dir=" +
                           (dir / "data") + " " + args,
                       dir / "stderr.txt");
  }
};

}  // namespace

TEST_F(MainRerun, TrainsThenResumesThenReportsTheFinishedRun) {
  const std::string checkpoint = dir / "runs/tiny/checkpoint.safetensors";
  // An interrupted run, as far as the next call can tell: 10 of tiny's 20 steps.
  const CliRun first = script("--set steps=10");
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  EXPECT_TRUE(contains(first.out, "trained steps 0..10")) << first.out;
  ASSERT_TRUE(fs::exists(checkpoint));

  // No --out given: the script names the config's folder itself, as --resume needs it.
  const CliRun resumed = script("");
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_TRUE(contains(resumed.out, "interrupted run (step 10 of 20): resuming")) << resumed.out;
  EXPECT_TRUE(contains(resumed.out, "trained steps 10..20")) << resumed.out;

  const auto size = fs::file_size(checkpoint);
  const auto mtime = fs::last_write_time(checkpoint);
  const std::string metrics = ecmoe::train_test::read_text(dir / "runs/tiny/metrics.jsonl");
  const CliRun finished = script("");
  ASSERT_EQ(finished.status, 0) << finished.out << finished.err;
  EXPECT_TRUE(contains(finished.out, "holds a finished run (20 steps)")) << finished.out;
  EXPECT_TRUE(contains(finished.out, "perplexity ")) << finished.out;  // `ecmoe eval`'s report
  EXPECT_TRUE(contains(finished.out, "from scratch")) << finished.out;
  EXPECT_EQ(fs::file_size(checkpoint), size);
  EXPECT_EQ(fs::last_write_time(checkpoint), mtime);
  EXPECT_EQ(ecmoe::train_test::read_text(dir / "runs/tiny/metrics.jsonl"), metrics);
}

TEST_F(MainRerun, TheUsersOutIsTheOnlyOne) {
  const std::string out = dir / "mine";
  const CliRun first = script("--out " + out + " --set steps=10");
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  EXPECT_TRUE(fs::exists(out + "/checkpoint.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "runs"));
  const CliRun resumed = script("--out=" + out);
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_TRUE(contains(resumed.out, "trained steps 10..20")) << resumed.out;
}

TEST_F(MainRerun, ABadArgumentGetsTrainsOneLineError) {
  const CliRun r = script("--set model.moe.routr=top2");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "ecmoe: error: ")) << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs"));
}
