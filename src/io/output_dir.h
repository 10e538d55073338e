// Output folders, checked before any work starts: a command that would train for an hour and then
// fail to write its result fails at once instead, with one line naming the folder.
#pragma once
#include <string>

namespace ecmoe {

// Makes sure `path` is a folder this process can write into: an existing directory, or one that
// can be created (it is, with its parents). `what` names the option in errors, e.g. "--out".
// Throws ecmoe::Error (one line) for an empty path, a path that is a file (or lies under one),
// a folder that cannot be created, or one that cannot be written. Returns `path`.
std::string prepare_output_dir(const std::string& path, const std::string& what);

// Throws ecmoe::Error unless `dir` is an existing folder in which a file can be created (tried,
// not guessed from permission bits, so a read-only file system is caught too).
void check_writable_dir(const std::string& dir, const std::string& what);

}  // namespace ecmoe
