// JSON (de)serialisation of the manifest with field-naming errors, and file verification.
#include "data/manifest.h"

#include <filesystem>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "data/checksum.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/json_input.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ecmoe::data {

std::string dtype_name(TokenDtype dtype) { return dtype == TokenDtype::u16 ? "uint16" : "uint32"; }

TokenDtype dtype_from_name(const std::string& name) {
  if (name == "uint16") return TokenDtype::u16;
  if (name == "uint32") return TokenDtype::u32;
  fail("unknown token dtype '", name, "' (expected uint16 or uint32)");
}

int dtype_bytes(TokenDtype dtype) { return dtype == TokenDtype::u16 ? 2 : 4; }

TokenDtype dtype_for_vocab(int vocab_size) {
  return vocab_size <= 65535 ? TokenDtype::u16 : TokenDtype::u32;
}

namespace {

json file_to_json(const FileEntry& f) {
  return {{"file", f.file}, {"bytes", f.bytes}, {"checksum", checksum_to_string(f.checksum)}};
}

// Field access with errors that name the field, instead of nlohmann's generic type_error.
template <typename T>
T field(const json& object, const std::string& key, const std::string& where) {
  ECMOE_CHECK(object.is_object() && object.contains(key), "manifest: ", where, " lacks '", key,
              "'");
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    fail("manifest: ", where, ".", key, " has the wrong type");
  }
}

FileEntry file_from_json(const json& j, const std::string& where) {
  FileEntry f;
  f.file = field<std::string>(j, "file", where);
  ECMOE_CHECK(!f.file.empty() && f.file.find('/') == std::string::npos && f.file[0] != '.',
              "manifest: ", where, ".file must be a plain file name, got '", f.file, "'");
  f.bytes = field<int64_t>(j, "bytes", where);
  f.checksum = checksum_from_string(field<std::string>(j, "checksum", where));
  return f;
}

}  // namespace

json manifest_to_json(const Manifest& m) {
  json splits = json::object();
  for (const auto& [name, s] : m.splits) {
    json j = file_to_json(s);
    j["tokens"] = s.tokens;
    j["documents"] = s.documents;
    splits[name] = j;
  }
  json corpora = json::array();
  for (const auto& c : m.corpora)
    corpora.push_back({{"name", c.name},
                       {"origin", c.origin},
                       {"train_documents", c.train_documents},
                       {"val_documents", c.val_documents},
                       {"train_tokens", c.train_tokens},
                       {"val_tokens", c.val_tokens}});
  json settings = {{"vocab_size", m.settings.vocab_size},
                   {"val_fraction", m.settings.val_fraction},
                   {"seed", m.settings.seed},
                   {"tokenizer_sample_bytes", m.settings.tokenizer_sample_bytes},
                   {"cleaning_version", m.settings.cleaning_version}};
  if (m.settings.document_bytes != 0) settings["document_bytes"] = m.settings.document_bytes;
  if (!m.settings.tokenizer.empty()) settings["tokenizer"] = m.settings.tokenizer;
  return {
      {"format", "ecmoe-tokens"},
      {"version", kManifestVersion},
      {"corpus", m.corpus},
      {"source_id", m.source_id},
      {"vocab_size", m.vocab_size},
      {"dtype", dtype_name(m.dtype)},
      {"eos_id", kEosId},
      {"settings", settings},
      {"tokenizer", file_to_json(m.tokenizer)},
      {"splits", splits},
      {"corpora", corpora},
  };
}

Manifest manifest_from_json(const json& j) {
  ECMOE_CHECK(j.is_object() && j.value("format", "") == "ecmoe-tokens",
              "manifest: not an ecmoe token manifest (format is not \"ecmoe-tokens\")");
  const int version = field<int>(j, "version", "manifest");
  ECMOE_CHECK(version == kManifestVersion, "manifest: version ", version,
              " is not supported (this ", "build reads version ", kManifestVersion, ")");
  Manifest m;
  m.corpus = field<std::string>(j, "corpus", "manifest");
  m.source_id = field<std::string>(j, "source_id", "manifest");
  m.vocab_size = field<int>(j, "vocab_size", "manifest");
  ECMOE_CHECK(m.vocab_size > 0, "manifest: vocab_size must be positive");
  m.dtype = dtype_from_name(field<std::string>(j, "dtype", "manifest"));
  ECMOE_CHECK(m.vocab_size <= 65536 || m.dtype == TokenDtype::u32, "manifest: vocab size ",
              m.vocab_size, " does not fit dtype uint16");
  const json settings = field<json>(j, "settings", "manifest");
  m.settings.vocab_size = field<int>(settings, "vocab_size", "settings");
  m.settings.val_fraction = field<double>(settings, "val_fraction", "settings");
  m.settings.seed = field<uint64_t>(settings, "seed", "settings");
  m.settings.tokenizer_sample_bytes =
      field<int64_t>(settings, "tokenizer_sample_bytes", "settings");
  m.settings.cleaning_version = field<int>(settings, "cleaning_version", "settings");
  // Added later: absent in older manifests, which cut each user file as one document.
  if (settings.contains("document_bytes"))
    m.settings.document_bytes = field<int64_t>(settings, "document_bytes", "settings");
  if (settings.contains("tokenizer"))
    m.settings.tokenizer = field<std::string>(settings, "tokenizer", "settings");
  m.tokenizer = file_from_json(field<json>(j, "tokenizer", "manifest"), "tokenizer");
  const json splits = field<json>(j, "splits", "manifest");
  ECMOE_CHECK(splits.is_object(), "manifest: splits must be an object");
  for (const auto& [name, s] : splits.items()) {
    ShardEntry e;
    static_cast<FileEntry&>(e) = file_from_json(s, "splits." + name);
    e.tokens = field<int64_t>(s, "tokens", "splits." + name);
    e.documents = field<int64_t>(s, "documents", "splits." + name);
    ECMOE_CHECK(e.tokens >= 0 && e.bytes == e.tokens * dtype_bytes(m.dtype), "manifest: splits.",
                name, " has ", e.bytes, " bytes for ", e.tokens, " ", dtype_name(m.dtype),
                " tokens");
    m.splits[name] = e;
  }
  const json corpora = field<json>(j, "corpora", "manifest");
  ECMOE_CHECK(corpora.is_array(), "manifest: corpora must be an array");
  for (const auto& c : corpora) {
    CorpusEntry e;
    e.name = field<std::string>(c, "name", "corpora[]");
    e.origin = field<std::string>(c, "origin", "corpora[]");
    e.train_documents = field<int64_t>(c, "train_documents", "corpora[]");
    e.val_documents = field<int64_t>(c, "val_documents", "corpora[]");
    e.train_tokens = field<int64_t>(c, "train_tokens", "corpora[]");
    e.val_tokens = field<int64_t>(c, "val_tokens", "corpora[]");
    m.corpora.push_back(e);
  }
  return m;
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFile;
  std::error_code ec;
  ECMOE_CHECK(fs::exists(path, ec), "no prepared data in ", dir, " (", path,
              " is missing; run `ecmoe prepare`)");
  const json j = parse_json(read_input_file(path, "manifest"), path);
  try {
    return manifest_from_json(j);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

void write_manifest(const std::string& dir, const Manifest& manifest) {
  write_file_atomically(dir + "/" + kManifestFile, manifest_to_json(manifest).dump(2) + "\n");
}

std::optional<std::string> check_file(const std::string& dir, const FileEntry& entry) {
  const std::string path = dir + "/" + entry.file;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return path + " is missing";
  if (int64_t(size) != entry.bytes) {
    std::ostringstream why;
    why << path << " has " << size << " bytes, expected " << entry.bytes << " (partial or damaged)";
    return why.str();
  }
  if (checksum_file(path) != entry.checksum) return path + " fails its checksum (damaged)";
  return std::nullopt;
}

}  // namespace ecmoe::data
