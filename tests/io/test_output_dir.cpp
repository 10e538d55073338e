// Output folders: checked (and created) before work starts, with one-line errors; locked so that
// two runs cannot share one, the second naming the first.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"
#include "io/dir_lock.h"
#include "io/output_dir.h"
#include "io_test_util.h"
#include "support/core/error_of.h"

namespace fs = std::filesystem;

namespace {
using ecmoe::testing::error_of;
}  // namespace

TEST(OutputDir, CreatesMissingFoldersAndRefusesFilesAndEmpty) {
  const fs::path dir = ecmoe::testing::make_temp_dir("ecmoe_outdir");
  ASSERT_FALSE(dir.empty());
  const std::string nested = (dir / "a/b/c").string();
  EXPECT_EQ(ecmoe::prepare_output_dir(nested, "--out"), nested);
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_EQ(ecmoe::prepare_output_dir(nested, "--out"), nested);  // existing: fine
  EXPECT_TRUE(fs::is_empty(nested));                              // the write probe is gone

  std::ofstream(dir / "file") << "x";
  const std::string file = (dir / "file").string();
  EXPECT_EQ(error_of([&] { ecmoe::prepare_output_dir(file, "--out"); }),
            "--out '" + file + "' exists and is not a folder: choose another path");
  const std::string under = error_of([&] { ecmoe::prepare_output_dir(file + "/sub", "--out"); });
  EXPECT_NE(under.find("cannot be created"), std::string::npos) << under;
  EXPECT_EQ(under.find('\n'), std::string::npos);
  EXPECT_EQ(error_of([&] { ecmoe::prepare_output_dir("", "--out"); }),
            "--out is empty: give the folder to write into");
  if (::geteuid() != 0) {  // root writes into read-only folders anyway
    fs::permissions(nested, fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_NE(error_of([&] { ecmoe::prepare_output_dir(nested, "--out"); }).find("not writable"),
              std::string::npos);
    fs::permissions(nested, fs::perms::owner_all);
  }
  fs::remove_all(dir);
}

TEST(DirLock, SecondLockFailsNamingTheHolderUntilTheFirstIsReleased) {
  const fs::path dir = ecmoe::testing::make_temp_dir("ecmoe_lock");
  ASSERT_FALSE(dir.empty());
  {
    const ecmoe::DirLock first(dir.string(), "output folder");
    EXPECT_TRUE(first.held());
    // flock locks belong to open files, so a second open in this process conflicts like another
    // process would.
    const std::string error =
        error_of([&] { ecmoe::DirLock second(dir.string(), "output folder"); });
    EXPECT_NE(error.find("is in use by another run (pid " + std::to_string(::getpid()) + " on "),
              std::string::npos)
        << error;
    EXPECT_NE(error.find("test_output_dir"), std::string::npos) << error;  // the command line
    EXPECT_EQ(error.find('\n'), std::string::npos);
  }
  const ecmoe::DirLock again(dir.string(), "output folder");  // released with the first
  EXPECT_TRUE(again.held());
  fs::remove_all(dir);
}
