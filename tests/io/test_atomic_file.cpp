// Atomic file replacement: the old file survives every failure and no temporary file is left.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io_test_util.h"

using namespace ecmoe;
namespace fs = std::filesystem;

namespace {

using ecmoe::testing::slurp;

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class AtomicFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ecmoe::testing::make_temp_dir("ecmoe_atomic");
    ASSERT_FALSE(dir_.empty());
    target_ = dir_ / "ckpt.bin";
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add);
    fs::remove_all(dir_);
  }
  fs::path dir_, target_;
};

}  // namespace

TEST_F(AtomicFile, WritesAndReplaces) {
  write_file_atomically(target_.string(), "first");
  EXPECT_EQ(slurp(target_), "first");
  write_file_atomically(target_.string(), "second, longer");
  EXPECT_EQ(slurp(target_), "second, longer");
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"ckpt.bin"});
  // Created like any file: 0666 minus the umask, not mkstemp's 0600.
  const mode_t mask = umask(022);
  umask(mask);
  EXPECT_EQ(fs::status(target_).permissions() & fs::perms::all, fs::perms(0666 & ~mask));
}

// Small pieces are buffered, big ones bypass the buffer; either way the bytes arrive in order.
TEST_F(AtomicFile, MixedWriteSizesArriveInOrder) {
  std::string expected;
  write_file_atomically(target_.string(), [&](AtomicFileWriter& out) {
    for (int i = 0; i < 5; ++i) {
      std::string small(100 + i, char('a' + i));
      std::string big((3 << 20) + i, char('A' + i));
      out.write(small);
      out.write(big);
      expected += small + big;
    }
    EXPECT_EQ(out.bytes_written(), expected.size());
  });
  EXPECT_EQ(slurp(target_), expected);
}

TEST_F(AtomicFile, ThrowingBodyKeepsOldFileAndRemovesTemp) {
  write_file_atomically(target_.string(), "old");
  EXPECT_THROW(write_file_atomically(target_.string(),
                                     [](AtomicFileWriter& out) {
                                       out.write(std::string(5 << 20, 'x'));
                                       throw std::runtime_error("boom");
                                     }),
               std::runtime_error);
  EXPECT_EQ(slurp(target_), "old");
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"ckpt.bin"});
}

TEST_F(AtomicFile, MissingDirectoryIsAClearError) {
  const std::string path = (dir_ / "nope" / "ckpt.bin").string();
  try {
    write_file_atomically(path, "x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// Root ignores directory permissions, so as root the write runs in a child process that has
// dropped to the unprivileged uid/gid 65534 first.
TEST_F(AtomicFile, ReadOnlyDirectoryKeepsOldFile) {
  write_file_atomically(target_.string(), "old");
  const bool as_root = geteuid() == 0;
  if (as_root) {
    ASSERT_EQ(chown(dir_.c_str(), 65534, 65534), 0);
  }
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  auto attempt = [&]() -> int {  // 0: refused with a clear error; 1: anything else
    try {
      write_file_atomically(target_.string(), "new");
      return 1;
    } catch (const Error& e) {
      return std::string(e.what()).find("Permission denied") != std::string::npos ? 0 : 1;
    }
  };
  if (!as_root) {
    EXPECT_EQ(attempt(), 0);
  } else {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      _exit(attempt());
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "cannot drop root privileges here";
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  EXPECT_EQ(slurp(target_), "old");
}

// The rename is the last step that can fail before the switch; the temp must still go.
TEST_F(AtomicFile, FailedRenameRemovesTemp) {
  fs::create_directory(target_);
  std::ofstream(target_ / "inside") << "occupied";
  try {
    write_file_atomically(target_.string(), "new");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rename failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find(target_.string()), std::string::npos) << msg;
  }
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"ckpt.bin"});
  EXPECT_EQ(slurp(target_ / "inside"), "occupied");
}

// A write that fails midway (disk full, quota): simulated with a file-size limit, in a child
// process so the limit does not leak into other tests.
namespace {
// Runs in the death-test child: exit code 0 when the failed write left everything as it was.
[[noreturn]] void write_past_file_size_limit(const fs::path& dir, const fs::path& target) {
  std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG from write() instead of a signal
  const rlimit limit{1 << 20, 1 << 20};
  setrlimit(RLIMIT_FSIZE, &limit);
  bool clear_error = false;
  try {
    write_file_atomically(target.string(), std::string(4 << 20, 'x'));
  } catch (const Error& e) {
    clear_error = std::string(e.what()).find("File too large") != std::string::npos;
  }
  const bool intact = slurp(target) == "old";
  const bool no_temp = listing(dir) == std::vector<std::string>{"ckpt.bin"};
  std::exit(clear_error && intact && no_temp ? 0 : 1);
}
}  // namespace

// A write that fails midway (disk full, quota): simulated with a file-size limit, in a child
// process so the limit does not leak into other tests.
TEST_F(AtomicFile, FailedWriteKeepsOldFile) {
  write_file_atomically(target_.string(), "old");
  EXPECT_EXIT(write_past_file_size_limit(dir_, target_), ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(slurp(target_), "old");
}

TEST_F(AtomicFile, PathWithoutDirectoryUsesCurrentDirectory) {
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  write_file_atomically("plain.txt", "here");
  fs::current_path(cwd);
  EXPECT_EQ(slurp(dir_ / "plain.txt"), "here");
}
