// Temporary files of killed writers (".<name>.tmp.<pid>.<n>") are removed at the next atomic
// write of the same file; those of live processes, and anything else, are kept.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "io/atomic_file.h"
#include "io/stale_temp.h"
#include "io_test_util.h"

namespace fs = std::filesystem;

namespace {

// A pid that was a process and is not one now: a child that exits at once, reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

void touch(const fs::path& path) { std::ofstream(path) << "partial checkpoint"; }

}  // namespace

TEST(StaleTemp, NextAtomicWriteRemovesTempsOfDeadWritersOnly) {
  const fs::path dir = ecmoe::testing::make_temp_dir("ecmoe_stale");
  ASSERT_FALSE(dir.empty());
  const fs::path target = dir / "checkpoint.safetensors";
  const std::string dead = std::to_string(dead_pid());
  const std::string prefix = ".checkpoint.safetensors.tmp.";
  const fs::path stale1 = dir / (prefix + dead + ".0");
  const fs::path stale2 = dir / (prefix + dead + ".7");
  const fs::path mine = dir / (prefix + std::to_string(::getpid()) + ".99");
  const fs::path init = dir / (prefix + "1.0");  // pid 1 is alive
  const fs::path other_file = dir / (".config.json.tmp." + dead + ".0");
  const fs::path not_ours = dir / (prefix + dead + ".x");
  for (const auto& p : {stale1, stale2, mine, init, other_file, not_ours}) touch(p);

  ecmoe::write_file_atomically(target.string(), "new checkpoint");
  EXPECT_EQ(ecmoe::testing::slurp(target), "new checkpoint");
  EXPECT_FALSE(fs::exists(stale1));
  EXPECT_FALSE(fs::exists(stale2));
  EXPECT_TRUE(fs::exists(mine));        // this process may still be writing it
  EXPECT_TRUE(fs::exists(init));        // a live process
  EXPECT_TRUE(fs::exists(other_file));  // another target's: removed when that one is written
  EXPECT_TRUE(fs::exists(not_ours));    // not a name write_file_atomically makes

  EXPECT_EQ(ecmoe::remove_stale_temps((dir / "config.json").string()), 1);
  EXPECT_FALSE(fs::exists(other_file));
  fs::remove_all(dir);
}
