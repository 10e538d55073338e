// fork + execvp. The child only redirects, changes folder and execs, which is safe after fork even
// in a process that already runs OpenMP threads.
#include "io/process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace ecmoe {

namespace {

// In the child: makes `fd_target` refer to `path` opened with `flags`, or exits 127.
void redirect(const std::string& path, int flags, int fd_target) {
  if (path.empty()) return;
  const int fd = ::open(path.c_str(), flags, 0666);
  if (fd < 0 || ::dup2(fd, fd_target) < 0) ::_exit(127);
  ::close(fd);
}

}  // namespace

int run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  ECMOE_CHECK(!argv.empty(), "run_process: empty command");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t pid = ::fork();
  ECMOE_CHECK(pid >= 0, "cannot start ", argv[0], ": fork failed");
  if (pid == 0) {
    redirect(options.stdin_path, O_RDONLY, STDIN_FILENO);
    redirect(options.stdout_path, O_WRONLY | O_CREAT | O_TRUNC, STDOUT_FILENO);
    redirect(options.stderr_path, O_WRONLY | O_CREAT | O_APPEND, STDERR_FILENO);
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) ::_exit(127);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    ECMOE_CHECK(errno == EINTR, "waiting for ", argv[0], " failed");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string first_output_line(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe(fds) != 0) return "";
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return "";
  }
  if (pid == 0) {
    ::close(fds[0]);
    if (::dup2(fds[1], STDOUT_FILENO) < 0) ::_exit(127);
    ::close(fds[1]);
    redirect("/dev/null", O_RDONLY, STDIN_FILENO);
    redirect("/dev/null", O_WRONLY, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string output;
  char buffer[4096];
  for (;;) {  // read everything, so the child never blocks on a full pipe
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n > 0) {
      if (output.size() < 65536) output.append(buffer, std::size_t(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
  std::string line = output.substr(0, output.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path || program.empty() || program.find('/') != std::string::npos) return std::nullopt;
  std::stringstream folders(path);
  std::string folder;
  while (std::getline(folders, folder, ':')) {
    if (folder.empty()) folder.assign(1, '.');  // not = ".": GCC 12 -Wrestrict false positive
    const std::string candidate = folder + "/" + program;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

std::string command_text(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& a : argv) {
    if (!line.empty()) line += ' ';
    line += a.find(' ') == std::string::npos ? a : "\"" + a + "\"";
  }
  return line;
}

std::string last_lines_of(const std::string& path, std::uintmax_t from, int max_lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(std::streamoff(from));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    lines.push_back(line);
    if (int(lines.size()) > max_lines) lines.erase(lines.begin());
  }
  std::string text;
  for (const std::string& l : lines) text += (text.empty() ? "" : " | ") + l;
  constexpr std::size_t kMaxBytes = 600;
  if (text.size() > kMaxBytes) text = "..." + text.substr(text.size() - kMaxBytes);
  return text;
}

}  // namespace ecmoe
