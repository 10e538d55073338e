// `ecmoe prepare` as a library call: text (a named corpus, or user files) -> cleaned documents ->
// train/validation split -> SentencePiece tokenizer (trained, or an existing one) -> token shards +
// manifest.json in one folder:
//   <out>/tokenizer.model  <out>/train.bin  <out>/val.bin  <out>/manifest.json
// Idempotent: a folder whose manifest matches the request and whose files pass their checksums is
// reused as is; a damaged or partial file is rebuilt (the tokenizer is kept if it is intact). A
// folder prepared from other text or settings is refused unless `force`. Whatever is rebuilt is
// built beside the folder and swapped in whole (data/prepare_swap.h): a failure or a kill never
// leaves the old folder unusable.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/document_cut.h"
#include "data/manifest.h"

namespace ecmoe::data {

struct PrepareConfig {
  std::string corpus = "english";    // a name from known_corpora(); ignored when inputs are given
  std::vector<std::string> inputs;   // files or folders (data/input_files.h)
  std::vector<std::string> include;  // globs choosing the files of input folders
  int64_t document_bytes = kDefaultDocumentBytes;  // inputs: document size (data/document_cut.h)
  // A SentencePiece model made by `ecmoe prepare` (e.g. another folder's tokenizer.model): the
  // text is encoded with it instead of a newly trained one, so checkpoints trained on that other
  // folder accept this one. It is copied into the folder; vocab_size and tokenizer_sample_bytes
  // are then unused, and val_fraction may be 1 (every document in validation).
  std::string tokenizer;
  std::string out_dir;  // empty: data/<corpus>
  std::string cache_dir = "data/cache";
  int vocab_size = 8000;
  double val_fraction = 0.025;
  uint64_t seed = 1234;
  int64_t tokenizer_sample_bytes = 40'000'000;
  bool force = false;  // rebuild everything, reuse nothing but the cache; replace other data
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

struct PrepareResult {
  std::string out_dir;
  Manifest manifest;
  bool reused = false;  // nothing was rebuilt
};

// Throws ecmoe::Error (one line) on bad settings, an unknown corpus, missing or non-UTF-8 input,
// no text after cleaning, or a failed fetch.
PrepareResult prepare(const PrepareConfig& config);

}  // namespace ecmoe::data
