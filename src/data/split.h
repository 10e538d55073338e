// Train/validation split by document: a document goes to validation when a hash of its source,
// name and the seed, read as a number in [0, 1), falls below the validation fraction. The choice
// depends on nothing else (not on order, thread count or the other documents), so adding a file
// never moves an existing one, and the same seed always gives the same split.
#pragma once
#include <cstdint>
#include <vector>

#include "data/document.h"

namespace ecmoe::data {

struct SplitConfig {
  double val_fraction = 0.025;  // expected share of documents (not tokens) in validation
  uint64_t seed = 1234;
};

// The document's draw in [0, 1).
double split_draw(const Document& doc, uint64_t seed);

struct SplitDocuments {
  std::vector<Document> train;
  std::vector<Document> val;
};

// Whether each document goes to validation. With two documents or more and 0 < val_fraction < 1,
// each side gets at least one: if the draws leave one side empty, the document with the extreme
// draw (lowest to validation, highest to training) moves over. val_fraction 1 puts every document
// in validation (text to evaluate on, encoded with an existing tokenizer). Throws ecmoe::Error
// unless 0 <= val_fraction <= 1.
std::vector<char> split_assignment(const std::vector<Document>& docs, const SplitConfig& config);

// The documents of split_assignment, each side in the input order.
SplitDocuments split_documents(std::vector<Document> docs, const SplitConfig& config);

}  // namespace ecmoe::data
