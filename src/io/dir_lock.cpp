#include "io/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "core/error.h"
#include "io/output_dir.h"

namespace ecmoe {

namespace {

// "pid 123 on host: ecmoe train --out runs/x", the arguments separated by spaces.
std::string holder_description() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string command((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!command.empty() && command.back() == '\0') command.pop_back();
  for (char& c : command)
    if (c == '\0' || c == '\n') c = ' ';
  if (command.size() > 300) command = command.substr(0, 300) + "...";
  return std::string("pid ") + std::to_string(::getpid()) + " on " + host + ": " + command;
}

std::string read_holder(int fd) {
  std::string text(512, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? std::size_t(n) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  return text.empty() ? "an unknown process" : text;
}

}  // namespace

DirLock::DirLock(const std::string& dir, const std::string& what) {
  const std::string path = (std::filesystem::path(dir) / kLockFile).string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    const int err = errno;
    fail("cannot lock ", what, " '", dir, "': cannot open ", path, ": ", std::strerror(err));
  }
  int locked;
  do {
    locked = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (locked != 0 && errno == EINTR);
  if (locked != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? read_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail(what, " '", dir, "' is in use by another run (", holder,
           "): wait for it to end, or use another folder");
    fail("cannot lock ", what, " '", dir, "': ", std::strerror(err));
  }
  // Best effort: the holder's description is for the error message of the next run only.
  const std::string text = holder_description() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t n = ::pwrite(fd_, text.data(), text.size(), 0);
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

DirLock::DirLock(DirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DirLock claim_output_dir(const std::string& dir, const std::string& option,
                         const std::string& what) {
  prepare_output_dir(dir, option);
  return DirLock(dir, what);
}

}  // namespace ecmoe
