#include "io/output_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace fs = std::filesystem;

namespace ecmoe {

void check_writable_dir(const std::string& dir, const std::string& what) {
  const std::string probe =
      (fs::path(dir) / (std::string(".ecmoe-write-test.") + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    fail(what, " '", dir, "' is not writable: ", std::strerror(err));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string prepare_output_dir(const std::string& path, const std::string& what) {
  ECMOE_CHECK(!path.empty(), what, " is empty: give the folder to write into");
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (fs::exists(status)) {
    ECMOE_CHECK(fs::is_directory(status), what, " '", path,
                "' exists and is not a folder: choose another path");
  } else {
    fs::create_directories(path, ec);
    ECMOE_CHECK(!ec, what, " '", path, "' cannot be created: ", ec.message());
  }
  check_writable_dir(path, what);
  return path;
}

}  // namespace ecmoe
