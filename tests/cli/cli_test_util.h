// Running the real `ecmoe` binary from a test: stdout captured, stderr into a file read back.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "../data/test_util.h"
#include "../train/train_test_util.h"

namespace ecmoe::cli_test {

struct CliRun {
  int status;       // exit status, -1 if the command did not exit normally
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command line (e.g. "mpirun ... ecmoe train ...").
inline CliRun run_command(const std::string& command_line, const std::string& err_file) {
  const std::string command = command_line + " 2>" + err_file;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed", ""};
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output, train_test::read_text(err_file)};
}

inline CliRun run_ecmoe(const std::string& args, const std::string& err_file) {
  return run_command(std::string(ECMOE_BINARY) + " " + args, err_file);
}

inline bool contains(const std::string& text, const std::string& fragment) {
  return text.find(fragment) != std::string::npos;
}

// A tiny pre-trained encoder for the tests of what comes after pre-training: sample text in
// <dir>/in, prepared into <dir>/data (320 pieces, a quarter held out), the `tiny` config trained
// `steps` steps into <dir>/pre (<dir>/pre/checkpoint.safetensors). Returns "" on success, else
// which command failed and its stderr.
inline std::string pretrain_tiny_encoder(const train_test::TempDir& dir, int steps) {
  for (int i = 0; i < 4; ++i)
    train_test::write_text(dir / ("in/part" + std::to_string(i) + ".txt"),
                           data::test::sample_text(300 + uint64_t(i), 80));
  const std::string err = dir / "pretrain-stderr.txt";
  const CliRun prepare = run_ecmoe("prepare --input " + (dir / "in") + " --out " + (dir / "data") +
                                       " --vocab-size 320 --val-fraction 0.25",
                                   err);
  if (prepare.status != 0) return "prepare failed: " + prepare.err;
  const CliRun train =
      run_ecmoe("train --config tiny --set data.dir=" + (dir / "data") +
                    " --set steps=" + std::to_string(steps) + " --out " + (dir / "pre"),
                err);
  if (train.status != 0) return "train failed: " + train.err;
  return "";
}

// The fixture of CLI tests that train: a fresh folder `dir` (named after the test suite) holding a
// small prepared data folder, <dir>/data (64 token ids, 20,000 training and `val_tokens`
// validation tokens), and `run` for the binary with its stderr kept in <dir>/stderr.txt.
class CliDataTest : public ::testing::Test {
 protected:
  explicit CliDataTest(const std::string& name, int val_tokens = 3000)
      : dir(name), val_tokens_(val_tokens) {}
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY))
        << ECMOE_BINARY << " is missing: build the ecmoe target before the tests";
    train_test::write_data_folder(dir / "data", 64, 20000, val_tokens_);
  }
  CliRun run(const std::string& args) { return run_ecmoe(args, dir / "stderr.txt"); }
  train_test::TempDir dir;

 private:
  int val_tokens_;
};

}  // namespace ecmoe::cli_test
