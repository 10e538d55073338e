// Crash-safe file replacement: a checkpoint on disk is always either the old complete file or the
// new complete file, never a half-written mix, whatever fails (disk full, a throw, power loss).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ecmoe {

// The sink handed to the body of write_file_atomically. Small writes are buffered; large ones go
// straight to the file, so writing a multi-GB tensor does not copy it.
class AtomicFileWriter {
 public:
  void write(const void* data, std::size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  std::uint64_t bytes_written() const { return written_; }

 private:
  friend void write_file_atomically(const std::string&,
                                    const std::function<void(AtomicFileWriter&)>&);
  AtomicFileWriter(int fd, std::string target) : fd_(fd), target_(std::move(target)) {}
  void flush();
  void write_fully(const char* data, std::size_t bytes);

  int fd_;
  std::string target_;  // for error messages: the user knows the target, not the temp name
  std::vector<char> buffer_;
  std::uint64_t written_ = 0;
};

// Writes `path` through `body`: a temporary file in the same directory (so the rename cannot cross
// file systems) is written, fsynced, renamed over `path`, and the directory is fsynced so the
// rename itself survives a crash. If anything fails before the rename (including `body`
// throwing), the temporary file is removed and the previous `path`, if any, is untouched; the
// error is an ecmoe::Error naming `path` and the OS error (an exception thrown by `body` is
// rethrown as is). A failure of the final directory fsync is reported too, but the new file is
// then already in place. The new file gets mode 0666 minus the umask, like any created file.
void write_file_atomically(const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& body);
void write_file_atomically(const std::string& path, std::string_view contents);

// Copies `from` to `to` through write_file_atomically: `to` is the old file or the whole copy,
// never part of one. An unreadable `from` is an ecmoe::Error naming it.
void copy_file_atomically(const std::string& from, const std::string& to);

}  // namespace ecmoe
