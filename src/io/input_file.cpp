// Regular-file checks for inputs: stat before opening, and the open itself non-blocking, so that
// a path swapped for a FIFO in between still cannot block.
#include "io/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace ecmoe {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

void check_mode(const struct stat& st, const std::string& path, const std::string& what) {
  ECMOE_CHECK(S_ISREG(st.st_mode), what, " ", path, " is not a regular file (", kind_of(st.st_mode),
              ")");
}

}  // namespace

void require_regular_file(const std::string& path, const std::string& what) {
  ECMOE_CHECK(!path.empty(), what, ": no path given");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) fail(what, " ", path, " does not exist");
    fail("cannot read ", what, " ", path, ": ", std::strerror(err));
  }
  check_mode(st, path, what);
}

std::string read_input_file(const std::string& path, const std::string& what,
                            std::uint64_t max_bytes) {
  require_regular_file(path, what);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail("cannot read ", what, " ", path, ": ", std::strerror(errno));
  std::string text;
  try {
    struct stat st;
    ECMOE_CHECK(::fstat(fd, &st) == 0, "cannot read ", what, " ", path, ": ", std::strerror(errno));
    check_mode(st, path, what);
    ECMOE_CHECK(std::uint64_t(st.st_size) <= max_bytes, what, " ", path, " has ", st.st_size,
                " bytes, more than the limit of ", max_bytes);
    text.resize(std::size_t(st.st_size));
    std::size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      ECMOE_CHECK(n >= 0, "cannot read ", what, " ", path, ": ", std::strerror(errno));
      if (n == 0) break;  // the file shrank while we read it
      got += std::size_t(n);
    }
    text.resize(got);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return text;
}

}  // namespace ecmoe
