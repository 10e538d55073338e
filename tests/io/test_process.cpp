// io/process.h and io/gnuplot.h: programs started with an argument vector (no shell ever parses
// an argument), PATH lookup without a shell, and gnuplot string quoting checked against gnuplot
// itself: backquotes and @macros stay text, quotes survive, control characters are dropped.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/gnuplot.h"
#include "io/process.h"
#include "io_test_util.h"

namespace fs = std::filesystem;
using ecmoe::testing::make_temp_dir;
using ecmoe::testing::slurp;

TEST(Process, ArgumentsReachTheProgramVerbatim) {
  const fs::path dir = make_temp_dir("ecmoe_process");
  const std::string hostile = "x'; touch PWNED; echo 'y `touch PWNED` $(touch PWNED)";
  const int rc =
      ecmoe::run_process({"printf", "%s|", hostile, "two words"},
                         {.cwd = dir.string(), .stdout_path = (dir / "out.txt").string()});
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(slurp(dir / "out.txt"), hostile + "|two words|");
  EXPECT_FALSE(fs::exists(dir / "PWNED"));
  EXPECT_FALSE(fs::exists("PWNED"));
  fs::remove_all(dir);
}

TEST(Process, ExitStatusAndMissingProgram) {
  EXPECT_EQ(ecmoe::run_process({"false"}), 1);
  EXPECT_EQ(ecmoe::run_process({"ecmoe-no-such-program"}), 127);
  EXPECT_EQ(ecmoe::first_output_line({"printf", "first\nsecond\n"}), "first");
  EXPECT_EQ(ecmoe::first_output_line({"false"}), "");
}

TEST(Process, FindsProgramsOnPathWithoutAShell) {
  const auto sh = ecmoe::find_on_path("sh");
  ASSERT_TRUE(sh.has_value());
  EXPECT_TRUE(fs::exists(*sh));
  EXPECT_FALSE(ecmoe::on_path("ecmoe-no-such-program"));
  EXPECT_FALSE(ecmoe::on_path("sh; touch PWNED"));
  EXPECT_FALSE(ecmoe::on_path("/bin/sh"));  // a name, not a path
}

TEST(Process, LastLinesOfALogFromAnOffset) {
  const fs::path dir = make_temp_dir("ecmoe_process");
  const std::string log = (dir / "log").string();
  ecmoe::run_process({"sh", "-c", "echo old >&2"}, {.stderr_path = log});
  const auto from = fs::file_size(log);
  ecmoe::run_process({"sh", "-c", "echo a >&2; echo >&2; echo b >&2; echo c >&2"},
                     {.stderr_path = log});
  EXPECT_EQ(ecmoe::last_lines_of(log, from, 2), "b | c");
  EXPECT_EQ(ecmoe::last_lines_of(log, from, 9), "a | b | c");
  EXPECT_EQ(ecmoe::last_lines_of(log, fs::file_size(log), 3), "");
  fs::remove_all(dir);
}

TEST(GnuplotQuote, ReplacesQuotesAndDropsControlCharacters) {
  EXPECT_EQ(ecmoe::gnuplot_quote("plain"), "'plain'");
  EXPECT_EQ(ecmoe::gnuplot_quote("it's"), "'it\u2019s'");
  EXPECT_EQ(ecmoe::gnuplot_quote("''x''"), "'\u2019\u2019x\u2019\u2019'");
  EXPECT_EQ(ecmoe::gnuplot_quote("a\nb\rc\td\x7f"), "'abcd'");
  EXPECT_EQ(ecmoe::gnuplot_quote("`id` \\ \"q\" @m"), "'`id` \\ \"q\" @m'");
  EXPECT_EQ(ecmoe::gnuplot_quote("\xE2\x96\x81the"), "'\xE2\x96\x81the'");
}

// What gnuplot itself makes of quoted hostile text: printed literally, nothing run.
TEST(GnuplotQuote, GnuplotRunsNothingAndPrintsTheTextBack) {
  if (!ecmoe::on_path("gnuplot")) GTEST_SKIP() << "gnuplot is not installed";
  const fs::path dir = make_temp_dir("ecmoe_gnuplot");
  const std::string texts[] = {"`touch PWNED`",      "x'; system(\"touch PWNED\"); print 'y",
                               "a\n!touch PWNED\nb", "@cmd \\` '' \"",
                               "$(touch PWNED)",     "'''"};
  std::string script = "cmd = \"touch PWNED\"\nset print 'printed.txt'\n";
  for (const std::string& t : texts) script += "print " + ecmoe::gnuplot_quote(t) + "\n";
  {
    std::FILE* f = std::fopen((dir / "t.gp").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(script.c_str(), f);
    std::fclose(f);
  }
  ecmoe::run_gnuplot(dir.string(), "t.gp", "test");
  EXPECT_FALSE(fs::exists(dir / "PWNED")) << script;
  EXPECT_EQ(slurp(dir / "printed.txt"),
            "`touch PWNED`\nx\u2019; system(\"touch PWNED\"); print \u2019y\na!touch PWNEDb\n"
            "@cmd \\` \u2019\u2019 \"\n$(touch PWNED)\n\u2019\u2019\u2019\n");
  fs::remove_all(dir);
}

TEST(GnuplotRun, FailureIsOneLineWithGnuplotsMessage) {
  if (!ecmoe::on_path("gnuplot")) GTEST_SKIP() << "gnuplot is not installed";
  const fs::path dir = make_temp_dir("ecmoe_gnuplot");
  {
    std::FILE* f = std::fopen((dir / "bad.gp").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("plot 'no-such-file.dat'\n", f);
    std::fclose(f);
  }
  try {
    ecmoe::run_gnuplot(dir.string(), "bad.gp", "test plot");
    FAIL() << "no error";
  } catch (const ecmoe::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test plot: gnuplot failed on"), std::string::npos) << what;
    EXPECT_NE(what.find("no-such-file.dat"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);  // bad.gp: gnuplot's captured stderr is removed
  fs::remove_all(dir);
}
