// Reading user files: strict UTF-8 (a wrong encoding is the user's to fix, not ours to guess).
#include "data/input_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "data/checksum.h"
#include "data/clean.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

bool hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

struct NamedFile {
  std::string name;
  fs::path path;
};

void collect(const std::string& arg, std::vector<NamedFile>& files) {
  const fs::path root(arg);
  std::error_code ec;
  const auto status = fs::status(root, ec);
  ECMOE_CHECK(!ec && fs::exists(status), "input ", arg, " does not exist");
  if (fs::is_regular_file(status)) {
    files.push_back({root.filename().string(), root});
    return;
  }
  ECMOE_CHECK(fs::is_directory(status), "input ", arg, " is neither a file nor a folder");
  std::vector<NamedFile> found;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file())
      found.push_back({fs::relative(it->path(), root).generic_string(), it->path()});
  }
  ECMOE_CHECK(!found.empty(), "input folder ", arg, " holds no files");
  std::sort(found.begin(), found.end(),
            [](const NamedFile& a, const NamedFile& b) { return a.name < b.name; });
  files.insert(files.end(), found.begin(), found.end());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  ECMOE_CHECK(in.good(), "cannot read input file ", path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  ECMOE_CHECK(!in.bad(), "read error on input file ", path.string());
  return bytes.str();
}

}  // namespace

InputFiles load_input_files(const std::vector<std::string>& paths) {
  ECMOE_CHECK(!paths.empty(), "no input files given");
  std::vector<NamedFile> files;
  for (const auto& p : paths) collect(p, files);

  InputFiles result;
  Fnv1a64 fingerprint;
  for (const auto& f : files) {
    const std::string raw = read_file(f.path);
    const auto bad = find_invalid_utf8(raw);
    ECMOE_CHECK(!bad, "input file ", f.path.string(), " is not UTF-8 text (invalid byte at offset ",
                bad.value_or(0), ")");
    fingerprint.update(f.name);
    fingerprint.update("\0", 1);
    fingerprint.update(raw);
    fingerprint.update("\0", 1);
    ++result.files;
    std::string text = clean_text(raw);
    if (!text.empty()) result.documents.push_back({"input", f.name, std::move(text)});
  }
  result.fingerprint = fingerprint.value();
  return result;
}

}  // namespace ecmoe::data
