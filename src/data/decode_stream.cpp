#include "data/decode_stream.h"

#include <cstddef>
#include <utility>

namespace ecmoe::data {

std::string without_replacement_chars(const std::string& text) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, kReplacement.size(), kReplacement) == 0) {
      i += kReplacement.size() - 1;
      continue;
    }
    out.push_back(text[i]);
  }
  return out;
}

DecodeStream::DecodeStream(const Tokenizer& tokenizer, std::vector<int> prompt)
    : tokenizer_(tokenizer), ids_(std::move(prompt)), returned_(decoded()) {}

std::string DecodeStream::decoded() const {
  return without_replacement_chars(tokenizer_.decode(ids_));
}

std::string DecodeStream::push(int id) {
  ids_.push_back(id);
  std::string text = decoded();
  if (text.size() < returned_.size() || text.compare(0, returned_.size(), returned_) != 0)
    return "";  // not an extension of what was shown (cannot happen with whole pieces); wait
  std::string fresh = text.substr(returned_.size());
  returned_ = std::move(text);
  return fresh;
}

}  // namespace ecmoe::data
