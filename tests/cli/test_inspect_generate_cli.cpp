// `ecmoe inspect` and `ecmoe generate` through the real binary, on a tiny decoder trained on a
// corpus whose tokenizer has pieces with shell and gnuplot metacharacters (` ' > ;):
// - no user text reaches a shell: a --png path built to break out of shell quotes, and a --text
//   whose pieces hold backquotes, run nothing (the folder they would write into stays empty),
//   and a path with a quote in it gets its PNG;
// - inspect's table columns line up in display columns ("▁the" is 4 columns, 6 bytes);
// - generate ends its text with a newline before the statistics (piped through 2>&1), says when
//   the model's context stops it before --max-tokens, and refuses --max-tokens 0 in one line;
//   --device cpu is the default (the same text), cuda in a build without the CUDA backend is a
//   one-line error, an unknown device a usage error.
#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "io/process.h"

namespace fs = std::filesystem;
using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::train_test::TempDir;

namespace {

// `text` as one word for the test's own shell (popen), whatever it holds.
std::string sh_quote(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

int files_in(const std::string& folder) {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++n;
  return n;
}

// Code points before byte offset `bytes` of `line`: its display column for this test's text.
int column_of(const std::string& line, std::size_t bytes) {
  int column = 0;
  for (std::size_t i = 0; i < bytes && i < line.size(); ++i)
    column += (static_cast<unsigned char>(line[i]) & 0xC0) != 0x80;
  return column;
}

class InspectGenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>("inspect-generate-cli");
    const TempDir& dir = *dir_;
    for (int i = 0; i < 4; ++i) {
      std::string text = ecmoe::data::test::sample_text(500 + i, 60);
      for (int k = 0; k < 30; ++k)
        text += "the king said `id` and `touch` to the city; a > b, it's the sea.\n";
      ecmoe::train_test::write_text(dir / ("in/part" + std::to_string(i) + ".txt"), text);
    }
    const CliRun prepare =
        run_in(".", "prepare --input " + (dir / "in") + " --out " + (dir / "data") +
                        " --vocab-size 320 --val-fraction 0.25");
    ASSERT_EQ(prepare.status, 0) << prepare.out << prepare.err;
    const CliRun train = run_in(".", "train --config tiny --set data.dir=" + (dir / "data") +
                                         " --set steps=4 --set eval.interval=0"
                                         " --set model.kind=decoder --out " +
                                         (dir / "dec"));
    ASSERT_EQ(train.status, 0) << train.out << train.err;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  // Runs ecmoe in folder `cwd` (where a command injected into a shell would write).
  static CliRun run_in(const std::string& cwd, const std::string& args) {
    return ecmoe::cli_test::run_command(
        "cd " + sh_quote(cwd) + " && " + sh_quote(ECMOE_BINARY) + " " + args, *dir_ / "stderr.txt");
  }
  static std::string checkpoint() { return *dir_ / "dec/checkpoint.safetensors"; }
  static std::string fresh_folder(const std::string& name) {
    const std::string folder = *dir_ / name;
    fs::remove_all(folder);
    fs::create_directories(folder);
    return folder;
  }

  static std::unique_ptr<TempDir> dir_;
};
std::unique_ptr<TempDir> InspectGenerateCli::dir_;

bool have_gnuplot() { return ecmoe::on_path("gnuplot"); }

TEST_F(InspectGenerateCli, PngPathIsNeverParsedByAShell) {
  if (!have_gnuplot()) GTEST_SKIP() << "gnuplot is not installed";
  const std::string cwd = fresh_folder("cwd-path");
  const std::string out = fresh_folder("png-path");
  const std::string png = out + "/x'; touch PWNED; echo 'y.png";
  const CliRun r = run_in(cwd, "inspect --checkpoint " + checkpoint() +
                                   " --text 'the king said' --png " + sh_quote(png));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(files_in(cwd), 0) << "a shell ran part of the --png path";
  EXPECT_FALSE(fs::exists(out + "/PWNED"));
  ASSERT_TRUE(fs::exists(png)) << r.out << r.err;
  EXPECT_GT(fs::file_size(png), 1000u);
  EXPECT_EQ(files_in(out), 1) << "scratch files left beside the PNG";
}

TEST_F(InspectGenerateCli, BackquotesInTheTextRunNothing) {
  if (!have_gnuplot()) GTEST_SKIP() << "gnuplot is not installed";
  const std::string cwd = fresh_folder("cwd-text");
  const std::string out = fresh_folder("png-text");
  for (const std::string text : {"`id>PWNED`", "said `touch` `id` ; > b", "it's `id` `id`"}) {
    const CliRun r = run_in(cwd, "inspect --checkpoint " + checkpoint() + " --text " +
                                     sh_quote(text) + " --png " + out + "/map.png");
    EXPECT_EQ(r.status, 0) << text << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "`")) << "no backquote piece in the table:\n" << r.out;
    EXPECT_EQ(files_in(cwd), 0) << "gnuplot ran a backquoted command of: " << text;
    EXPECT_TRUE(fs::exists(out + "/map.png"));
  }
}

TEST_F(InspectGenerateCli, TableColumnsAlignInDisplayColumns) {
  const CliRun r = run_in(".", "inspect --checkpoint " + checkpoint() +
                                   " --text 'the king said it to the sea; the city'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<int> columns;
  bool word_start = false, no_word_start = false;
  while (std::getline(lines, line)) {
    if (line.size() < 6 || line[3] < '0' || line[3] > '9') continue;  // rows: "%4d  token ..."
    const std::size_t token_end = line.find(' ', 6);
    const std::size_t cell = line.find_first_not_of(' ', token_end);
    ASSERT_NE(cell, std::string::npos) << line;
    columns.push_back(column_of(line, cell));
    (contains(line.substr(6, token_end - 6), "\xE2\x96\x81") ? word_start : no_word_start) = true;
  }
  ASSERT_GE(columns.size(), 5u) << r.out;
  EXPECT_TRUE(word_start && no_word_start) << "want rows with and without ▁:\n" << r.out;
  for (const int c : columns) EXPECT_EQ(c, columns.front()) << r.out;
}

TEST_F(InspectGenerateCli, GenerateEndsItsTextBeforeTheStatistics) {
  // Both streams into one pipe, as `ecmoe generate ... 2>&1 | less` shows them.
  const CliRun r = run_in(".", "generate --checkpoint " + checkpoint() +
                                   " --prompt 'the king' --max-tokens 5 --seed 3 2>&1 | cat");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::size_t stats = r.out.find(" tokens in ");
  ASSERT_NE(stats, std::string::npos) << r.out;
  const std::size_t line_start = r.out.rfind('\n', stats);
  ASSERT_NE(line_start, std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(line_start + 1, 2), "5 ") << "statistics glued to the text:\n" << r.out;
  EXPECT_EQ(r.out.find("\xEF\xBF\xBD"), std::string::npos) << "U+FFFD in:\n" << r.out;
}

TEST_F(InspectGenerateCli, GenerateSaysWhenTheContextStopsIt) {
  const CliRun full = run_in(".", "generate --checkpoint " + checkpoint() +
                                      " --prompt 'the king' --max-tokens 500 --temperature 1");
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_TRUE(contains(full.err, "the model's context of 32 tokens (prompt included) is full"))
      << full.err;
  const CliRun fits = run_in(".", "generate --checkpoint " + checkpoint() +
                                      " --prompt 'the king' --max-tokens 3 --temperature 1");
  ASSERT_EQ(fits.status, 0) << fits.err;
  EXPECT_FALSE(contains(fits.err, "context")) << fits.err;
}

TEST_F(InspectGenerateCli, GenerateRefusesZeroTokensInOneLine) {
  const CliRun r =
      run_in(".", "generate --checkpoint " + checkpoint() + " --prompt 'the king' --max-tokens 0");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--max-tokens must be at least 1, got 0")) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST_F(InspectGenerateCli, GenerateDeviceChoosesWhereTheDecoderRuns) {
  const std::string args =
      "generate --checkpoint " + checkpoint() + " --prompt 'the king' --max-tokens 6 --seed 4";
  const CliRun plain = run_in(".", args);
  ASSERT_EQ(plain.status, 0) << plain.err;
  const CliRun cpu = run_in(".", args + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  EXPECT_EQ(cpu.out, plain.out);
  EXPECT_TRUE(contains(cpu.err, ", device cpu")) << cpu.err;
#ifndef ECMOE_HAVE_CUDA
  const CliRun cuda = run_in(".", args + " --device cuda");
  EXPECT_EQ(cuda.status, 1) << cuda.out << cuda.err;
  EXPECT_TRUE(contains(cuda.err, "--device cuda: this ecmoe was built without the CUDA backend"))
      << cuda.err;
  EXPECT_EQ(cuda.err.find('\n'), cuda.err.size() - 1) << cuda.err;
  EXPECT_TRUE(cuda.out.empty()) << cuda.out;
#endif
  const CliRun unknown = run_in(".", args + " --device gpu");
  EXPECT_NE(unknown.status, 0);
  EXPECT_TRUE(contains(unknown.err, "--device")) << unknown.err;
}

}  // namespace
