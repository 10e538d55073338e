// How `ecmoe prepare` replaces a data folder without ever leaving it unusable: the new folder is
// built beside the old one (same parent, so the final rename cannot cross file systems) and
// swapped in whole; the old folder, and every checkpoint trained on it, stays valid until then.
//   <parent>/.<name>.prepare-new   the folder being built
//   <parent>/.<name>.prepare-old   the old folder between the two renames of a swap
#pragma once
#include <functional>
#include <string>

namespace ecmoe::data {

struct SwapPaths {
  std::string out;      // the folder itself (absolute, symlinks resolved)
  std::string staging;  // .<name>.prepare-new
  std::string old;      // .<name>.prepare-old
};

// Throws ecmoe::Error (one line) when `out` cannot be a data folder: a file, or the current
// directory or one above it (swapping it would pull the folder from under the shell).
SwapPaths swap_paths(const std::string& out);

// Cleans up after a run that was killed: puts back an old folder that was moved aside but never
// replaced, and removes stale staging and old folders. `log` gets one line per action.
void recover_interrupted_swap(const SwapPaths& paths,
                              const std::function<void(const std::string&)>& log);

// Throws ecmoe::Error unless every entry in `out` (if it exists) is a file prepare writes, so a
// rebuild never takes anything else with it. `shown` is the folder as the user named it.
void check_only_prepared_files(const std::string& out, const std::string& shown);

// Hard-links `from` to `to` (cheap for multi-GB shards), copying when the file system cannot.
void link_or_copy(const std::string& from, const std::string& to);

// Moves the finished staging folder to `out`: an atomic exchange where the file system has one
// (renameat2), else the old folder is renamed aside, the new one renamed in, and the old removed.
void swap_in(const SwapPaths& paths);

}  // namespace ecmoe::data
