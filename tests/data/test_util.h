// Helpers shared by the data tests: a scratch folder removed at the end, small file I/O, and a
// deterministic generator of English-like text for tokenizer training.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.h"

namespace ecmoe::data::test {

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            ("ecmoe-data-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Flips one bit of the byte at `offset`.
inline void flip_byte(const std::string& path, std::size_t offset) {
  std::string bytes = read_text(path);
  bytes.at(offset) ^= 0x01;
  std::ofstream(path, std::ios::binary) << bytes;
}

// `lines` sentences of 6-14 words from a small lowercase vocabulary: about 30 distinct
// characters, so a tokenizer of ~300 pieces fits.
inline std::string sample_text(uint64_t seed, int lines) {
  static const std::vector<std::string> words = {
      "the",   "quick", "brown",  "fox",     "jumps", "over", "lazy",  "dog",   "a",
      "whale", "ship",  "sea",    "captain", "and",   "of",   "to",    "in",    "was",
      "state", "union", "people", "nation",  "law",   "said", "great", "small", "water",
      "light", "day",   "night",  "king",    "house", "jury", "city",  "vote",  "year"};
  Rng rng(seed, 0);
  std::string text;
  uint64_t k = 0;
  for (int i = 0; i < lines; ++i) {
    const int n = 6 + int(rng.below(k++, 9));
    for (int w = 0; w < n; ++w) {
      if (w > 0) text += ' ';
      text += words[rng.below(k++, words.size())];
    }
    text += ".\n";
  }
  return text;
}

// `count` paragraphs of 4 sample_text sentences separated by blank lines: about 250 bytes each.
inline std::string paragraph_text(uint64_t seed, int count) {
  std::string text;
  for (int p = 0; p < count; ++p) text += sample_text(seed * 1000 + uint64_t(p), 4) + "\n";
  return text;
}

}  // namespace ecmoe::data::test
