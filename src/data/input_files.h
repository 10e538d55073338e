// User text for `ecmoe prepare --input PATH...` and `ecmoe eval --text PATH...`. A file given
// directly is always read. A folder stands for the files under it (recursively, hidden files and
// folders skipped, in sorted order of their paths relative to it) that --include selects:
// - with include globs (fnmatch(3)), a file whose name (or, for a glob holding '/', whose path
//   relative to the folder) matches one of them;
// - without, every file but those that are not plain prose text: data, markup and binary formats
//   by extension (.json, .jsonl, .csv, .tsv, .xml, .html, .yaml, archives, images, ...) and files
//   that are not UTF-8. These are counted and named in InputFiles::skipped.
// Every file read must be UTF-8. Each file is cut into documents (data/document_cut.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"
#include "data/document_cut.h"

namespace ecmoe::data {

struct InputOptions {
  std::vector<std::string> include;                // globs for files inside folders; empty: text
  int64_t document_bytes = kDefaultDocumentBytes;  // 0: each file one document
};

struct InputFileSummary {
  std::string name;  // as in its documents' names
  std::string path;
  int64_t bytes = 0;      // raw
  int64_t documents = 0;  // after cleaning and cutting
};

struct InputFiles {
  // Source "input", named by the file's path relative to the given folder (or its file name for a
  // file given directly), with "#k" (k = 1, 2, ...) appended when the file gives several.
  std::vector<Document> documents;
  std::vector<int> document_file;       // index into `files` of each document
  std::vector<InputFileSummary> files;  // every file read, empty ones included
  std::vector<std::string> skipped;     // folder files left out by the default selection
  uint64_t fingerprint = 0;             // FNV-1a of every file's name and raw bytes
};

// Throws ecmoe::Error naming the path for a missing path, an unreadable file, a file that is not
// UTF-8 (with the byte offset), or a folder with no files to take.
InputFiles load_input_files(const std::vector<std::string>& paths,
                            const InputOptions& options = {});

// One line: "skipped 3 files that are not plain text (a.json, b.png, c.csv): pass --include GLOB
// to choose the files of a folder"; empty when nothing was skipped.
std::string skipped_files_note(const InputFiles& input);

}  // namespace ecmoe::data
