// Read side of a prepared data folder, for training: one split's token stream held in memory,
// checked against the manifest (size and checksum) and the vocabulary when opened, so a damaged
// or partial shard is an error here rather than garbage in a training run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/manifest.h"

namespace ecmoe::data {

class TokenDataset {
 public:
  // Opens <dir>/<split's file> ("train" or "val"). Throws ecmoe::Error with one line naming the
  // problem: no manifest, unknown split, missing file, wrong size, checksum mismatch, id >= vocab.
  static TokenDataset open(const std::string& dir, const std::string& split);
  // A stream encoded in memory (e.g. `eval --text`), named `split`, with the tokenizer at
  // `tokenizer_path`. Throws ecmoe::Error if an id is not below vocab_size.
  static TokenDataset from_tokens(const std::string& split, const std::vector<int32_t>& tokens,
                                  int64_t documents, int vocab_size,
                                  const std::string& tokenizer_path);

  int64_t size() const { return size_; }
  uint32_t operator[](int64_t i) const {
    return u16_.empty() ? u32_[std::size_t(i)] : u16_[std::size_t(i)];
  }
  // Copies tokens [start, start + out.size()) into out; throws ecmoe::Error if out of range.
  void read(int64_t start, std::span<int32_t> out) const;

  int vocab_size() const { return manifest_.vocab_size; }
  int64_t documents() const { return documents_; }
  const std::string& split() const { return split_; }
  // Path of the tokenizer that made the ids (for decoding samples).
  const std::string& tokenizer_path() const { return tokenizer_path_; }
  const Manifest& manifest() const { return manifest_; }

 private:
  TokenDataset() = default;

  std::string dir_, split_, tokenizer_path_;
  Manifest manifest_;
  int64_t size_ = 0;
  int64_t documents_ = 0;
  std::vector<uint16_t> u16_;  // exactly one of the two holds the tokens
  std::vector<uint32_t> u32_;
};

}  // namespace ecmoe::data
