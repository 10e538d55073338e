// Trains the SentencePiece BPE tokenizer of a prepared corpus on its training documents, with
// ecmoe's fixed special ids (see tokenizer.h) and byte fallback, so no text is ever <unk>.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/document.h"

namespace ecmoe::data {

struct TokenizerTrainConfig {
  int vocab_size = 8000;
  // Text budget: lines are sampled (deterministically, by seed) down to about this many bytes,
  // which keeps BPE training near half a minute on 2 cores whatever the corpus size.
  int64_t sample_bytes = 40'000'000;
  uint64_t seed = 1234;
  double character_coverage = 0.9999;
  // SentencePiece skips longer sentences, so longer lines (a speech is one paragraph line) are cut
  // at sentence ends or spaces before training.
  int max_sentence_bytes = 4096;
};

// Smallest vocabulary that holds the 7 special pieces, the 256 byte pieces and a few merges.
inline constexpr int kMinVocabSize = 7 + 256 + 16;

struct TrainedTokenizer {
  std::string model;  // serialized SentencePiece model proto, the content of tokenizer.model
  int64_t sentences = 0;
  int64_t bytes = 0;  // of the sampled training text
};

// Throws ecmoe::Error if the vocabulary is too small, there is no text, or SentencePiece fails.
TrainedTokenizer train_tokenizer(const std::vector<Document>& docs,
                                 const TokenizerTrainConfig& config);

}  // namespace ecmoe::data
