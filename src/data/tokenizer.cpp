// Tokenizer: load-time check of the special ids; SentencePiece statuses become ecmoe::Error.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>

#include "core/error.h"
#include "io/input_file.h"

namespace ecmoe::data {

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  Tokenizer t;
  t.path_ = path;
  require_regular_file(path, "tokenizer");  // a FIFO, device or folder would hang or crash Load
  const auto status = t.sp_->Load(path);
  ECMOE_CHECK(status.ok(), "cannot load tokenizer ", path, ": ", status.ToString());
  const auto& sp = *t.sp_;
  const bool ids_ok = sp.pad_id() == kPadId && sp.unk_id() == kUnkId && sp.bos_id() == kBosId &&
                      sp.eos_id() == kEosId && sp.PieceToId("[MASK]") == kMaskId &&
                      sp.PieceToId("[SEP]") == kSepId && sp.PieceToId("[CLS]") == kClsId;
  ECMOE_CHECK(ids_ok, "tokenizer ", path,
              " does not use ecmoe's special ids (pad 0, unk 1, bos 2, eos 3, [MASK] 4, [SEP] 5, "
              "[CLS] 6); it was not made by `ecmoe prepare`");
  return t;
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  ECMOE_CHECK(status.ok(), "tokenizer ", path_, ": cannot encode: ", status.ToString());
  return ids;
}

std::string Tokenizer::decode(std::span<const int> ids) const {
  const std::vector<int> copy(ids.begin(), ids.end());
  std::string text;
  const auto status = sp_->Decode(copy, &text);
  ECMOE_CHECK(status.ok(), "tokenizer ", path_, ": cannot decode: ", status.ToString());
  return text;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::string Tokenizer::piece(int id) const {
  ECMOE_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(),
              ")");
  return sp_->IdToPiece(id);
}

int Tokenizer::piece_id(std::string_view piece) const { return sp_->PieceToId(piece); }

}  // namespace ecmoe::data
