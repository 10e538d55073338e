// DecodeStream (data/decode_stream.h): text printed token by token equals the whole decoded text,
// and a character that byte fallback spreads over several pieces comes out whole once its last
// byte arrives, never as U+FFFD (the old streaming printed U+FFFD, then nothing more).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "data/decode_stream.h"
#include "data/input_files.h"
#include "data/tokenizer.h"
#include "data/tokenizer_trainer.h"
#include "io/atomic_file.h"
#include "test_util.h"

using namespace ecmoe::data;
using ecmoe::data::test::TempDir;

namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

Tokenizer small_tokenizer(const TempDir& dir) {
  for (int i = 0; i < 2; ++i)
    ecmoe::data::test::write_text(dir / ("in/doc" + std::to_string(i) + ".txt"),
                                  ecmoe::data::test::sample_text(i, 100));
  TokenizerTrainConfig config;
  config.vocab_size = 300;
  const TrainedTokenizer trained =
      train_tokenizer(load_input_files({dir / "in"}).documents, config);
  ecmoe::write_file_atomically(dir / "t.model", trained.model);
  return Tokenizer::load(dir / "t.model");
}

int byte_piece(const Tokenizer& tok, unsigned byte) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", byte);
  const int id = tok.piece_id(name);
  EXPECT_NE(id, kUnkId) << name;
  return id;
}

}  // namespace

TEST(DecodeStream, CharactersSplitOverBytePiecesComeOutWhole) {
  TempDir dir("decode-stream");
  const Tokenizer tok = small_tokenizer(dir);
  const std::vector<int> prompt = tok.encode("the king");
  DecodeStream stream(tok, prompt);
  std::string printed;
  // "€" then " was": the euro sign is E2 82 AC, three byte pieces.
  EXPECT_EQ(stream.push(byte_piece(tok, 0xE2)), "");
  EXPECT_EQ(stream.push(byte_piece(tok, 0x82)), "");
  printed += stream.push(byte_piece(tok, 0xAC));
  for (const int id : tok.encode(" was")) printed += stream.push(id);
  EXPECT_EQ(printed.find(kReplacement), std::string::npos) << printed;
  EXPECT_EQ(printed, "\xE2\x82\xAC was");
}

TEST(DecodeStream, IncompleteOrInvalidBytesAreDropped) {
  TempDir dir("decode-stream");
  const Tokenizer tok = small_tokenizer(dir);
  DecodeStream stream(tok, tok.encode("the"));
  std::string printed;
  for (const int id : tok.encode(" sea")) printed += stream.push(id);
  printed += stream.push(byte_piece(tok, 0x82));  // a continuation byte with no lead byte
  for (const int id : tok.encode(" day")) printed += stream.push(id);
  printed += stream.push(byte_piece(tok, 0xE2));  // cut off by the end of generation
  EXPECT_EQ(printed, " sea day");
}

TEST(DecodeStream, TokenByTokenEqualsTheWholeText) {
  TempDir dir("decode-stream");
  const Tokenizer tok = small_tokenizer(dir);
  const std::vector<int> prompt = tok.encode("the quick");
  const std::vector<int> rest = tok.encode("the quick brown fox jumps over the lazy dog.");
  DecodeStream stream(tok, prompt);
  std::string printed;
  std::vector<int> all = prompt;
  for (std::size_t i = prompt.size(); i < rest.size(); ++i) {
    printed += stream.push(rest[i]);
    all.push_back(rest[i]);
  }
  EXPECT_EQ("the quick" + printed, tok.decode(all));
}
