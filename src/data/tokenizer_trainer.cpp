// SentencePiece training through its C++ API: sentences come from an in-memory iterator and the
// model comes back as a string, so nothing is written behind our back.
#include "data/tokenizer_trainer.h"

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "core/error.h"
#include "core/rng.h"
#include "data/checksum.h"
#include "data/clean.h"
#include "data/lines.h"
#include "data/tokenizer.h"

// Exported by libsentencepiece but declared in no installed header. Training logs a page of INFO
// lines per run; we report progress ourselves.
namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int level);
}  // namespace sentencepiece::logging

namespace ecmoe::data {

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& sentences) : sentences_(sentences) {}
  bool done() const override { return index_ >= sentences_.size(); }
  void Next() override { ++index_; }
  const std::string& value() const override { return sentences_[index_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& sentences_;
  std::size_t index_ = 0;
};

class QuietLogs {
 public:
  QuietLogs() : saved_(sentencepiece::logging::GetMinLogLevel()) {
    sentencepiece::logging::SetMinLogLevel(2);  // errors only
  }
  ~QuietLogs() { sentencepiece::logging::SetMinLogLevel(saved_); }

 private:
  int saved_;
};

}  // namespace

TrainedTokenizer train_tokenizer(const std::vector<Document>& docs,
                                 const TokenizerTrainConfig& config) {
  ECMOE_CHECK(config.vocab_size >= kMinVocabSize, "vocab size ", config.vocab_size,
              " is too small: at least ", kMinVocabSize,
              " needed (7 special pieces, 256 byte pieces, some merges)");
  ECMOE_CHECK(config.vocab_size <= (1 << 20), "vocab size ", config.vocab_size,
              " is too large (at most 1048576)");

  int64_t total_bytes = 0;
  for (const auto& d : docs) total_bytes += int64_t(d.text.size());
  ECMOE_CHECK(total_bytes > 0, "no training text for the tokenizer");
  // Each line is kept with the same probability; the draw depends only on the seed, the document
  // and the line's position, so the sample does not depend on thread count or document order.
  const double keep = std::min(1.0, double(config.sample_bytes) / double(total_bytes));
  TrainedTokenizer result;
  std::vector<std::string> sentences;
  for (const auto& d : docs) {
    const Rng rng(config.seed, fnv1a64(d.source + "/" + d.name));
    uint64_t index = 0;
    for_each_line(d.text, [&](std::string_view line) {
      for (const auto piece : cut_long_line(line, std::size_t(config.max_sentence_bytes))) {
        if (keep < 1.0 && rng.uniform(index++) >= keep) continue;
        sentences.emplace_back(piece);
        result.bytes += int64_t(piece.size());
      }
    });
  }
  ECMOE_CHECK(!sentences.empty(), "no training text for the tokenizer after sampling");
  result.sentences = int64_t(sentences.size());

  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(config.vocab_size)},
      {"character_coverage", std::to_string(config.character_coverage)},
      {"byte_fallback", "true"},
      {"pad_id", std::to_string(kPadId)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"user_defined_symbols", "[MASK],[SEP],[CLS]"},
      {"input_sentence_size", "0"},  // we sampled already
      {"max_sentence_length", std::to_string(config.max_sentence_bytes + 16)},
      // The thread count is stored in the model file. BPE training in SentencePiece 0.1.97 runs
      // no faster with more threads (measured on the English corpus), and a fixed value keeps
      // tokenizer.model byte-identical on every machine.
      {"num_threads", "1"},
  };
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(config.seed));
  VectorIterator iterator(sentences);
  sentencepiece::util::Status status;
  {
    QuietLogs quiet;
    status = sentencepiece::SentencePieceTrainer::Train(args, &iterator, &result.model);
  }
  if (!status.ok()) {
    // SentencePiece's own message names options of its command-line tool; say it in our terms.
    const std::string message = status.message();
    int have = 0, need = 0;
    const std::size_t at = message.find("required_chars.");
    if (at != std::string::npos &&
        std::sscanf(message.c_str() + at, "required_chars. %d vs %d", &have, &need) == 2)
      fail("vocab size ", config.vocab_size, " is too small for this text: at least ", need,
           " needed (7 special pieces, 256 byte pieces and ", need - 263, " characters)");
    fail("tokenizer training failed: ", message);
  }
  return result;
}

}  // namespace ecmoe::data
