// Text of a growing token sequence, for printing as tokens come (`ecmoe generate`). SentencePiece
// decodes a word's leading space only after other text, so the whole sequence is decoded each
// time and what lies past the text already returned is new. A character spread over several
// byte pieces (byte fallback) decodes to U+FFFD until its last byte arrives, so U+FFFD is never
// returned: only complete UTF-8 characters are (a byte sequence the model never completes, or
// an invalid one, is dropped).
#pragma once
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace ecmoe::data {

class DecodeStream {
 public:
  // `prompt`: the ids already shown to the user (as the prompt's own text).
  DecodeStream(const Tokenizer& tokenizer, std::vector<int> prompt);

  // Appends `id`; returns the text it completes ("" while a character is incomplete).
  std::string push(int id);

 private:
  std::string decoded() const;

  const Tokenizer& tokenizer_;
  std::vector<int> ids_;
  std::string returned_;  // decoded() as of the last time text was returned
};

// `text` without U+FFFD (the replacement character).
std::string without_replacement_chars(const std::string& text);

}  // namespace ecmoe::data
