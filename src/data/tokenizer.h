// A thin wrapper over a SentencePiece model trained by `ecmoe prepare`. The special ids are fixed
// for every model the engine uses, so model code can name them without loading a tokenizer.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ecmoe::data {

inline constexpr int kPadId = 0;
inline constexpr int kUnkId = 1;
inline constexpr int kBosId = 2;
inline constexpr int kEosId = 3;
inline constexpr int kMaskId = 4;  // "[MASK]", for span-corruption / masked-LM fine-tuning
inline constexpr int kSepId = 5;   // "[SEP]", between the two sentences of a pair task
inline constexpr int kClsId = 6;   // "[CLS]", the classification slot
inline constexpr int kFirstOrdinaryId = 7;

class Tokenizer {
 public:
  // Loads a model file and checks that it uses the ids above; throws ecmoe::Error otherwise.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Ids of the text, with no BOS/EOS added. The text "[MASK]", "[SEP]" or "[CLS]" in the input
  // becomes the special id: they are user-defined pieces.
  std::vector<int> encode(std::string_view text) const;
  std::string decode(std::span<const int> ids) const;
  int vocab_size() const;
  std::string piece(int id) const;
  // The id of a piece, or kUnkId if there is no such piece.
  int piece_id(std::string_view piece) const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
};

}  // namespace ecmoe::data
