// Runs an external program (npm, tar, apt-get, dpkg, bible, gnuplot, git) without a shell: the
// program gets an argument vector, so no path, package name or label the user typed is ever
// parsed by a shell, and none needs quoting. The one way this project starts other programs.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ecmoe {

// Paths are taken relative to the caller's folder, not to cwd.
struct ProcessOptions {
  // Default initializers let callers name only the fields they set ({.cwd = dir}).
  std::string cwd = {};          // empty: the current folder
  std::string stdin_path = {};   // empty: inherit; else read from (e.g. /dev/null)
  std::string stdout_path = {};  // empty: inherit; else truncated and written
  std::string stderr_path = {};  // empty: inherit; else appended to (e.g. a log of every fetch)
};

// Runs argv[0] (looked up on PATH unless it holds a '/') and returns its exit status: 128 +
// the signal if a signal ended it, 127 if it could not be started.
int run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// The first line argv prints on stdout ("" if it fails or prints nothing); stderr is discarded.
std::string first_output_line(const std::vector<std::string>& argv);

// The path of the executable file `program` in the first folder of PATH that has one; nullopt
// if none does. Reads PATH itself: no shell, no `command -v`.
std::optional<std::string> find_on_path(const std::string& program);
inline bool on_path(const std::string& program) { return find_on_path(program).has_value(); }

// argv joined with spaces (arguments with spaces in double quotes), for messages only.
std::string command_text(const std::vector<std::string>& argv);

// The last `max_lines` non-empty lines of what was appended to the file at `path` from byte
// `from` on (e.g. a program's stderr in a log), joined with " | " so that they fit in a one-line
// error; at most 600 bytes (the end is kept). "" if there are none.
std::string last_lines_of(const std::string& path, std::uintmax_t from, int max_lines);

}  // namespace ecmoe
