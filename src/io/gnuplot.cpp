#include "io/gnuplot.h"

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <system_error>

#include "core/error.h"
#include "io/process.h"

namespace fs = std::filesystem;

namespace ecmoe {

std::string gnuplot_quote(std::string_view text) {
  std::string quoted = "'";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) continue;
    quoted += c == '\'' ? std::string_view("\u2019") : std::string_view(&c, 1);
  }
  return quoted + "'";
}

std::string find_gnuplot(const std::string& purpose) {
  const std::optional<std::string> path = find_on_path("gnuplot");
  ECMOE_CHECK(path.has_value(), purpose,
              ": gnuplot is not installed (apt-get install gnuplot-nox, or run "
              "scripts/install-deps.sh)");
  return *path;
}

void run_gnuplot(const std::string& dir, const std::string& script, const std::string& purpose) {
  const std::string gnuplot = find_gnuplot(purpose);
  const std::string log =
      (fs::path(dir) / (".gnuplot-stderr." + std::to_string(::getpid()))).string();
  fs::remove(log);
  const int rc = run_process(
      {gnuplot, script},
      {.cwd = dir, .stdin_path = "/dev/null", .stdout_path = "/dev/null", .stderr_path = log});
  const std::string messages = last_lines_of(log, 0, 3);
  std::error_code ignored;
  fs::remove(log, ignored);
  ECMOE_CHECK(rc == 0, purpose, ": gnuplot failed on ", (fs::path(dir) / script).string(),
              " (exit ", rc, ")", messages.empty() ? "" : ": ", messages);
}

}  // namespace ecmoe
