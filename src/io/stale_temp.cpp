#include "io/stale_temp.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace ecmoe {

namespace {

// The pid in "<pid>.<n>", or -1 when `rest` does not have that shape.
long pid_of(const std::string& rest) {
  const std::size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == rest.size()) return -1;
  long pid = -1;
  const auto [p, ec] = std::from_chars(rest.data(), rest.data() + dot, pid);
  if (ec != std::errc() || p != rest.data() + dot || pid <= 0) return -1;
  for (std::size_t i = dot + 1; i < rest.size(); ++i)
    if (rest[i] < '0' || rest[i] > '9') return -1;
  return pid;
}

bool process_exists(long pid) { return ::kill(pid_t(pid), 0) == 0 || errno == EPERM; }

}  // namespace

int remove_stale_temps(const std::string& target) {
  const fs::path path(target);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  // Appended piece by piece: GCC 12 gives a false -Wrestrict for "literal" + std::string&&.
  std::string prefix = ".";
  prefix += path.filename().string();
  prefix += ".tmp.";
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = pid_of(name.substr(prefix.size()));
    if (pid < 0 || pid == long(::getpid()) || process_exists(pid)) continue;
    std::error_code remove_ec;
    if (it->is_regular_file(remove_ec) && fs::remove(it->path(), remove_ec)) ++removed;
  }
  return removed;
}

}  // namespace ecmoe
