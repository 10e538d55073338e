// A document: the unit that the train/validation split assigns and that the token stream ends
// with an EOS token (one speech, one Brown file, one Bible book, one Moby Dick chapter, a group of
// WordNet glosses, one user file).
#pragma once
#include <string>

namespace ecmoe::data {

struct Document {
  std::string source;  // corpus it came from, e.g. "brown"; part of the split hash
  std::string name;    // unique within source, stable across runs, e.g. "ca01"
  std::string text;    // cleaned: non-empty lines (paragraphs, verses, glosses) joined by '\n'
};

}  // namespace ecmoe::data
