// The shard is read whole into memory and checksummed from that same buffer, so what is checked is
// exactly what training reads (no window for the file to change in between).
#include "data/token_dataset.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

#include "core/error.h"
#include "data/checksum.h"
#include "io/input_file.h"

namespace ecmoe::data {

TokenDataset TokenDataset::open(const std::string& dir, const std::string& split) {
  TokenDataset ds;
  ds.dir_ = dir;
  ds.split_ = split;
  ECMOE_CHECK(!std::filesystem::exists(dir) || std::filesystem::is_directory(dir), "data folder '",
              dir, "' is a file, not a folder (give the folder `ecmoe prepare` wrote)");
  ds.manifest_ = read_manifest(dir);
  const auto it = ds.manifest_.splits.find(split);
  ECMOE_CHECK(it != ds.manifest_.splits.end(), "no split '", split, "' in ", dir, "/",
              kManifestFile);
  const ShardEntry& entry = it->second;
  ds.tokenizer_path_ = dir + "/" + ds.manifest_.tokenizer.file;
  const std::string path = dir + "/" + entry.file;

  require_regular_file(path, "token shard");
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);
  ECMOE_CHECK(!ec, "token shard ", path, " is missing; rerun `ecmoe prepare`");
  ECMOE_CHECK(int64_t(file_bytes) == entry.bytes, "token shard ", path, " has ", file_bytes,
              " bytes, the manifest says ", entry.bytes,
              " (partial or damaged); rerun `ecmoe prepare`");

  std::vector<unsigned char> bytes(file_bytes);
  {
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    ECMOE_CHECK(f != nullptr, "cannot open token shard ", path);
    ECMOE_CHECK(std::fread(bytes.data(), 1, bytes.size(), f.get()) == bytes.size(),
                "cannot read token shard ", path);
  }
  Fnv1a64 h;
  h.update(bytes.data(), bytes.size());
  ECMOE_CHECK(h.value() == entry.checksum, "token shard ", path,
              " fails its checksum (damaged); rerun `ecmoe prepare`");

  ds.size_ = entry.tokens;
  ds.documents_ = entry.documents;
  const uint32_t vocab = uint32_t(ds.manifest_.vocab_size);
  uint32_t max_id = 0;
  if (ds.manifest_.dtype == TokenDtype::u16) {
    ds.u16_.resize(std::size_t(ds.size_));
    for (std::size_t i = 0; i < ds.u16_.size(); ++i) {
      ds.u16_[i] = uint16_t(bytes[2 * i] | (bytes[2 * i + 1] << 8));
      max_id = std::max<uint32_t>(max_id, ds.u16_[i]);
    }
  } else {
    ds.u32_.resize(std::size_t(ds.size_));
    for (std::size_t i = 0; i < ds.u32_.size(); ++i) {
      const unsigned char* b = &bytes[4 * i];
      ds.u32_[i] =
          uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
      max_id = std::max(max_id, ds.u32_[i]);
    }
  }
  ECMOE_CHECK(ds.size_ == 0 || max_id < vocab, "token shard ", path, " holds id ", max_id,
              " but the vocabulary has ", vocab, " pieces");
  return ds;
}

TokenDataset TokenDataset::from_tokens(const std::string& split, const std::vector<int32_t>& tokens,
                                       int64_t documents, int vocab_size,
                                       const std::string& tokenizer_path) {
  TokenDataset ds;
  ds.split_ = split;
  ds.tokenizer_path_ = tokenizer_path;
  ds.manifest_.vocab_size = vocab_size;
  ds.manifest_.dtype = TokenDtype::u32;
  ds.size_ = int64_t(tokens.size());
  ds.documents_ = documents;
  ds.u32_.reserve(tokens.size());
  for (const int32_t id : tokens) {
    ECMOE_CHECK(id >= 0 && id < vocab_size, "the ", split, " tokens hold id ", id,
                " but the vocabulary has ", vocab_size, " pieces");
    ds.u32_.push_back(uint32_t(id));
  }
  return ds;
}

void TokenDataset::read(int64_t start, std::span<int32_t> out) const {
  const int64_t count = int64_t(out.size());
  ECMOE_CHECK(start >= 0 && start + count <= size_, "token range [", start, ", ", start + count,
              ") outside ", split_, " split of ", size_, " tokens");
  if (!u16_.empty()) {
    for (int64_t i = 0; i < count; ++i) out[std::size_t(i)] = u16_[std::size_t(start + i)];
  } else {
    for (int64_t i = 0; i < count; ++i) out[std::size_t(i)] = int32_t(u32_[std::size_t(start + i)]);
  }
}

}  // namespace ecmoe::data
