// `ecmoe prepare --input ... --out ...` end to end through the real binary: exit codes, the one
// line of a user error, and a second run that reuses the folder.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "data/token_dataset.h"
#include "test_util.h"

using ecmoe::data::test::TempDir;

namespace {

struct CliRun {
  int status;
  std::string output;  // stdout and stderr together
};

CliRun run_ecmoe(const std::string& args) {
  const std::string command = std::string(ECMOE_BINARY) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class PrepareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY))
        << ECMOE_BINARY << " is missing: build the ecmoe target before the tests";
    for (int i = 0; i < 5; ++i)
      ecmoe::data::test::write_text(dir / ("docs/f" + std::to_string(i) + ".txt"),
                                    ecmoe::data::test::sample_text(7 * i, 50));
  }
  TempDir dir{"cli"};
};

}  // namespace

TEST_F(PrepareCli, PreparesFilesThenReuses) {
  const std::string args = "prepare --input " + (dir / "docs") + " " + (dir / "docs/f0.txt") +
                           " --out " + (dir / "out") + " --vocab-size 300 --val-fraction 0.3";
  const CliRun first = run_ecmoe(args);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("trained a 300-piece BPE tokenizer"), std::string::npos);
  EXPECT_NE(first.output.find("train"), std::string::npos);
  for (const char* file : {"manifest.json", "tokenizer.model", "train.bin", "val.bin"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("out/" + std::string(file)))) << file;
  const auto train = ecmoe::data::TokenDataset::open(dir / "out", "train");
  const auto val = ecmoe::data::TokenDataset::open(dir / "out", "val");
  EXPECT_EQ(train.documents() + val.documents(), 6);  // f0.txt is given twice
  EXPECT_GT(train.size(), 1000);

  const CliRun second = run_ecmoe(args);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("reusing"), std::string::npos);
  EXPECT_EQ(second.output.find("trained"), std::string::npos);
}

TEST_F(PrepareCli, UserErrorsExitOneWithOneLine) {
  const auto expect_error = [&](const std::string& args, const std::string& fragment) {
    const CliRun r = run_ecmoe(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("ecmoe: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
    const std::string last_line = r.output.substr(r.output.rfind("ecmoe: error: "));
    EXPECT_EQ(last_line.find('\n'), last_line.size() - 1) << "not one line: " << last_line;
  };
  expect_error("prepare --input " + (dir / "missing.txt") + " --out " + (dir / "o"),
               "does not exist");
  expect_error("prepare --input " + (dir / "docs") + " --out " + (dir / "o") + " --vocab-size 10",
               "vocab size 10 is too small");
  expect_error("prepare --corpus klingon --out " + (dir / "o"), "unknown corpus 'klingon'");
  expect_error("prepare --input " + (dir / "docs"), "--input needs --out");
  ecmoe::data::test::write_text(dir / "empty/blank.txt", "\n   \n");
  expect_error("prepare --input " + (dir / "empty") + " --out " + (dir / "o"),
               "no text after cleaning");
}
