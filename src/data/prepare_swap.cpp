#include "data/prepare_swap.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "data/manifest.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

// Names prepare writes into a data folder, and the temporaries of their atomic writes.
bool is_prepared_file(const std::string& name) {
  for (const char* file : {kManifestFile, "tokenizer.model", "train.bin", "val.bin"}) {
    if (name == file) return true;
    const std::string temp = std::string(".") + file + ".tmp.";
    if (name.compare(0, temp.size(), temp) == 0) return true;
  }
  return false;
}

[[noreturn]] void fail_rename(const std::string& from, const std::string& to, int err) {
  fail("cannot move '", from, "' to '", to, "': ", std::strerror(err));
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

SwapPaths swap_paths(const std::string& out) {
  std::error_code ec;
  fs::path path = fs::absolute(out, ec).lexically_normal();
  ECMOE_CHECK(!ec, "--out '", out, "': ", ec.message());
  if (!path.has_filename()) path = path.parent_path();  // "dir/" -> "dir"
  if (fs::is_symlink(fs::symlink_status(path, ec))) {   // swap the folder it points to
    path = fs::canonical(path, ec);
    ECMOE_CHECK(!ec, "--out '", out, "': ", ec.message());
  }
  const fs::file_status status = fs::status(path, ec);
  ECMOE_CHECK(!fs::exists(status) || fs::is_directory(status), "--out '", out,
              "' exists and is not a folder: choose another path");
  const fs::path cwd = fs::current_path(ec);
  if (!ec) {
    const auto rel = cwd.lexically_relative(path);
    ECMOE_CHECK(rel.empty() || *rel.begin() == "..", "--out '", out,
                "' is the current directory or holds it: choose a folder of its own");
  }
  const fs::path parent = path.parent_path();
  const std::string name = path.filename().string();
  return {path.string(), (parent / (std::string(".") + name + ".prepare-new")).string(),
          (parent / (std::string(".") + name + ".prepare-old")).string()};
}

void recover_interrupted_swap(const SwapPaths& paths,
                              const std::function<void(const std::string&)>& log) {
  std::error_code ec;
  if (!fs::exists(paths.out, ec) && fs::is_directory(paths.old, ec)) {
    // Killed between the two renames of a swap: the old folder is whole, the new one may not be.
    if (::rename(paths.old.c_str(), paths.out.c_str()) != 0)
      fail_rename(paths.old, paths.out, errno);
    if (log) log("restored " + paths.out + " from an interrupted prepare");
  }
  for (const std::string& stale : {paths.staging, paths.old}) {
    if (!fs::exists(fs::symlink_status(stale, ec))) continue;
    fs::remove_all(stale, ec);
    ECMOE_CHECK(!ec, "cannot remove '", stale, "' left by an interrupted prepare: ", ec.message());
    if (log) log("removed " + stale + ", left by an interrupted prepare");
  }
}

void check_only_prepared_files(const std::string& out, const std::string& shown) {
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return;
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    ECMOE_CHECK(is_prepared_file(name) && it->is_regular_file(), "--out '", shown, "' holds '",
                name,
                "', which prepare did not write, so rebuilding it there would take that along: "
                "choose an empty or new folder");
  }
  ECMOE_CHECK(!ec, "cannot list '", shown, "': ", ec.message());
}

void link_or_copy(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (ec) fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

void swap_in(const SwapPaths& paths) {
  const std::string parent = fs::path(paths.out).parent_path().string();
  // Into a missing or empty folder's place, rename alone is atomic.
  if (::rename(paths.staging.c_str(), paths.out.c_str()) == 0) {
    sync_dir(parent);
    return;
  }
  if (errno != ENOTEMPTY && errno != EEXIST) fail_rename(paths.staging, paths.out, errno);
  if (::renameat2(AT_FDCWD, paths.staging.c_str(), AT_FDCWD, paths.out.c_str(), RENAME_EXCHANGE) !=
      0) {
    if (errno != EINVAL && errno != ENOSYS) fail_rename(paths.staging, paths.out, errno);
    // No exchange here: rename aside, rename in (recover_interrupted_swap covers a kill between).
    if (::rename(paths.out.c_str(), paths.old.c_str()) != 0)
      fail_rename(paths.out, paths.old, errno);
    if (::rename(paths.staging.c_str(), paths.out.c_str()) != 0) {
      const int err = errno;
      ::rename(paths.old.c_str(), paths.out.c_str());
      fail_rename(paths.staging, paths.out, err);
    }
  } else {
    // The exchange put the old folder at the staging path; park it where a kill leaves it found.
    if (::rename(paths.staging.c_str(), paths.old.c_str()) != 0)
      fail_rename(paths.staging, paths.old, errno);
  }
  sync_dir(parent);
  std::error_code ec;
  fs::remove_all(paths.old, ec);  // the new folder is in place; a leftover goes next time
}

}  // namespace ecmoe::data
