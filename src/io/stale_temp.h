// Temporary files that killed writers left behind. write_file_atomically names its temporary
// ".<name>.tmp.<pid>.<n>" beside the target; a process killed before its rename leaves one (for a
// checkpoint, a checkpoint's size) that nothing else would ever remove.
#pragma once
#include <string>

namespace ecmoe {

// Removes, in the folder of `target`, each ".<target name>.tmp.<pid>.<n>" whose pid is not a live
// process (this process's own are kept). A pid that a live process reuses keeps its file: it is
// removed at a later write. Failures are ignored: this is housekeeping, never an error. Returns how
// many files were removed.
int remove_stale_temps(const std::string& target);

}  // namespace ecmoe
