// Reading user files: strict UTF-8 for what is taken (a wrong encoding is the user's to fix, not
// ours to guess); folder files are chosen by glob (fnmatch, never a shell) or by a default that
// leaves out what is not prose.
#include "data/input_files.h"

#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
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
  bool from_folder = false;
};

// Extensions of files that hold data, markup or binary content rather than prose.
bool not_prose_extension(const fs::path& path) {
  static constexpr std::array<std::string_view, 44> kSkipped = {
      "json", "jsonl", "ndjson", "csv", "tsv",     "xml",         "html",   "htm", "xhtml",
      "yaml", "yml",   "toml",   "gz",  "bz2",     "xz",          "zst",    "zip", "tar",
      "tgz",  "7z",    "pdf",    "png", "jpg",     "jpeg",        "gif",    "bmp", "webp",
      "svg",  "ico",   "mp3",    "wav", "flac",    "ogg",         "mp4",    "bin", "model",
      "npy",  "npz",   "pt",     "pkl", "parquet", "safetensors", "sqlite", "db"};
  std::string ext = path.extension().string();
  if (ext.size() < 2) return false;
  ext.erase(0, 1);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return std::find(kSkipped.begin(), kSkipped.end(), ext) != kSkipped.end();
}

// A glob without '/' matches the file name, one with '/' the path relative to the folder.
bool included(const std::string& relative, const std::vector<std::string>& globs) {
  const std::string name = fs::path(relative).filename().string();
  for (const auto& glob : globs) {
    const bool by_path = glob.find('/') != std::string::npos;
    if (::fnmatch(glob.c_str(), (by_path ? relative : name).c_str(), by_path ? FNM_PATHNAME : 0) ==
        0)
      return true;
  }
  return false;
}

std::string joined_globs(const std::vector<std::string>& globs) {
  std::string text;
  for (const auto& g : globs) text += (text.empty() ? "'" : ", '") + g + "'";
  return text;
}

void collect(const std::string& arg, const InputOptions& options, std::vector<NamedFile>& files,
             std::vector<std::string>& skipped) {
  const fs::path root(arg);
  std::error_code ec;
  const auto status = fs::status(root, ec);
  ECMOE_CHECK(!ec && fs::exists(status), "input ", arg, " does not exist");
  if (fs::is_regular_file(status)) {
    files.push_back({root.filename().string(), root, false});
    return;
  }
  ECMOE_CHECK(fs::is_directory(status), "input ", arg, " is neither a file nor a folder");
  std::vector<NamedFile> found;
  int64_t all = 0;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    ++all;
    const std::string relative = fs::relative(it->path(), root).generic_string();
    if (!options.include.empty()) {
      if (included(relative, options.include)) found.push_back({relative, it->path(), true});
    } else if (not_prose_extension(it->path())) {
      skipped.push_back((root / relative).string());
    } else {
      found.push_back({relative, it->path(), true});
    }
  }
  ECMOE_CHECK(all > 0, "input folder ", arg, " holds no files");
  ECMOE_CHECK(!found.empty() || options.include.empty(), "input folder ", arg,
              " holds no file matching --include ", joined_globs(options.include));
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

InputFiles load_input_files(const std::vector<std::string>& paths, const InputOptions& options) {
  ECMOE_CHECK(!paths.empty(), "no input files given");
  ECMOE_CHECK(options.document_bytes >= 0, "document size must be >= 0 bytes, got ",
              options.document_bytes);
  std::vector<NamedFile> files;
  InputFiles result;
  for (const auto& p : paths) collect(p, options, files, result.skipped);

  Fnv1a64 fingerprint;
  for (const auto& f : files) {
    const std::string raw = read_file(f.path);
    const auto bad = find_invalid_utf8(raw);
    if (bad && f.from_folder && options.include.empty()) {  // the default takes text files only
      result.skipped.push_back(f.path.string());
      continue;
    }
    ECMOE_CHECK(!bad, "input file ", f.path.string(), " is not UTF-8 text (invalid byte at offset ",
                bad.value_or(0), ")");
    fingerprint.update(f.name);
    fingerprint.update("\0", 1);
    fingerprint.update(raw);
    fingerprint.update("\0", 1);
    std::vector<std::string> texts = cut_documents(raw, options.document_bytes);
    const int index = int(result.files.size());
    result.files.push_back({f.name, f.path.string(), int64_t(raw.size()), int64_t(texts.size())});
    for (std::size_t k = 0; k < texts.size(); ++k) {
      std::string name = texts.size() == 1 ? f.name : f.name + "#" + std::to_string(k + 1);
      result.documents.push_back({"input", std::move(name), std::move(texts[k])});
      result.document_file.push_back(index);
    }
  }
  ECMOE_CHECK(!result.files.empty(),
              "the inputs hold no plain text file: ", skipped_files_note(result));
  result.fingerprint = fingerprint.value();
  return result;
}

std::string skipped_files_note(const InputFiles& input) {
  if (input.skipped.empty()) return "";
  constexpr std::size_t kNamed = 3;
  std::string names;
  for (std::size_t i = 0; i < std::min(kNamed, input.skipped.size()); ++i)
    names += (i ? ", " : "") + input.skipped[i];
  if (input.skipped.size() > kNamed)
    names += ", and " + std::to_string(input.skipped.size() - kNamed) + " more";
  return "skipped " + std::to_string(input.skipped.size()) +
         (input.skipped.size() == 1 ? " file that is" : " files that are") + " not plain text (" +
         names + "): pass --include GLOB to choose the files of a folder";
}

}  // namespace ecmoe::data
