// Running the real `ecmoe` binary from a test: stdout captured, stderr into a file read back.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

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

// The fixture of CLI tests that train: a fresh folder `dir` (named after the test suite) holding a
// small prepared data folder, <dir>/data (64 token ids, 20,000 training and 3,000 validation
// tokens), and `run` for the binary with its stderr kept in <dir>/stderr.txt.
class CliDataTest : public ::testing::Test {
 protected:
  explicit CliDataTest(const std::string& name) : dir(name) {}
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY))
        << ECMOE_BINARY << " is missing: build the ecmoe target before the tests";
    train_test::write_data_folder(dir / "data", 64, 20000, 3000);
  }
  CliRun run(const std::string& args) { return run_ecmoe(args, dir / "stderr.txt"); }
  train_test::TempDir dir;
};

}  // namespace ecmoe::cli_test
