// User text for `ecmoe prepare --input PATH...`: each file is one document. A folder stands for
// every regular file under it (recursively, hidden files and folders skipped), in sorted order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"

namespace ecmoe::data {

struct InputFiles {
  std::vector<Document> documents;  // source "input", named by path relative to the given folder
                                    // (or the file name for a file given directly); empty
                                    // documents dropped
  int64_t files = 0;                // files read, empty ones included
  uint64_t fingerprint = 0;         // FNV-1a of every file's name and raw bytes
};

// Throws ecmoe::Error naming the path for a missing path, an unreadable file, a file that is not
// UTF-8 (with the byte offset), or a folder with no files.
InputFiles load_input_files(const std::vector<std::string>& paths);

}  // namespace ecmoe::data
