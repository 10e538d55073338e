// Runs an external program (npm, tar, bible, apt-get, dpkg) without a shell, so paths and
// package names need no quoting. Used only by corpus fetching.
#pragma once
#include <string>
#include <vector>

namespace ecmoe::data {

struct ProcessOptions {
  std::string cwd;          // empty: the current folder
  std::string stdout_path;  // empty: inherit; else truncated and written
  std::string stderr_path;  // empty: inherit; else appended to (a log of every fetch)
};

// Runs argv[0] (looked up on PATH) and returns its exit status; 127 if it could not be started.
int run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// True if `program` is an executable file in some folder of PATH.
bool on_path(const std::string& program);

// argv joined with spaces, for messages.
std::string command_line(const std::vector<std::string>& argv);

}  // namespace ecmoe::data
