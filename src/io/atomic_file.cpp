// Temp file + fsync + rename + directory fsync: the POSIX recipe for replacing a file atomically.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "io/stale_temp.h"

namespace ecmoe {

namespace {

constexpr std::size_t kBufferBytes = 1 << 20;

std::string os_error(int err) {
  char buf[256];
  // GNU strerror_r returns the message, which may or may not live in `buf`.
  return strerror_r(err, buf, sizeof(buf));
}

[[noreturn]] void fail_os(const std::string& target, const std::string& what, int err) {
  fail("cannot write '", target, "': ", what, ": ", os_error(err));
}

// Unique within the process (counter) and across processes (pid); O_EXCL settles the rest.
std::string temp_name(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  // Appended piece by piece: GCC 12 gives a false -Wrestrict for "literal" + std::string&&.
  std::string name = ".";
  name += target.filename().string();
  name += ".tmp.";
  name += std::to_string(getpid());
  name += '.';
  name += std::to_string(counter.fetch_add(1));
  return (target.parent_path() / name).string();
}

}  // namespace

void AtomicFileWriter::write_fully(const char* data, std::size_t bytes) {
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, data, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_os(target_, "write failed", errno);
    }
    data += n;
    bytes -= std::size_t(n);
  }
}

void AtomicFileWriter::flush() {
  write_fully(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void AtomicFileWriter::write(const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  if (buffer_.size() + bytes > kBufferBytes) flush();
  if (bytes >= kBufferBytes) {
    write_fully(p, bytes);
  } else {
    buffer_.insert(buffer_.end(), p, p + bytes);
  }
  written_ += bytes;
}

void write_file_atomically(const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& body) {
  ECMOE_CHECK(!path.empty(), "cannot write a file with an empty path");
  const std::filesystem::path target(path);
  ECMOE_CHECK(target.has_filename(), "cannot write '", path, "': the path names a directory");
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  remove_stale_temps(path);  // left by writers that were killed before their rename

  std::string temp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp = temp_name(target);
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt == 100)) {
      fail_os(path, "cannot create temporary file '" + temp + "'", errno);
    }
  }

  bool renamed = false;
  try {
    AtomicFileWriter writer(fd, path);
    body(writer);
    writer.flush();
    if (::fsync(fd) != 0) fail_os(path, "fsync failed", errno);
    const int closed = ::close(fd);
    fd = -1;
    // close can report a deferred write error (e.g. on NFS); the data would then be incomplete.
    if (closed != 0) fail_os(path, "close failed", errno);
    if (::rename(temp.c_str(), path.c_str()) != 0) fail_os(path, "rename failed", errno);
    renamed = true;
  } catch (...) {
    if (fd >= 0) ::close(fd);
    if (!renamed) ::unlink(temp.c_str());
    throw;
  }

  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail_os(path, "cannot open directory to fsync it", errno);
  const int synced = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (synced != 0) fail_os(path, "fsync of the directory failed (the new file is in place)", err);
}

void copy_file_atomically(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  ECMOE_CHECK(in.good(), "cannot read '", from, "'");
  write_file_atomically(to, [&](AtomicFileWriter& out) {
    std::vector<char> chunk(kBufferBytes);
    while (in) {
      in.read(chunk.data(), std::streamsize(chunk.size()));
      if (in.gcount() > 0) out.write(chunk.data(), std::size_t(in.gcount()));
    }
    ECMOE_CHECK(in.eof(), "cannot read '", from, "'");
  });
}

void write_file_atomically(const std::string& path, std::string_view contents) {
  write_file_atomically(path, [&](AtomicFileWriter& out) { out.write(contents); });
}

}  // namespace ecmoe
