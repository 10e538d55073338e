// Tokenizer training on a small text written to a scratch folder: fixed special ids, round trips,
// determinism, and the errors a user can cause.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/clean.h"
#include "data/input_files.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"
#include "data/tokenizer_trainer.h"
#include "io/atomic_file.h"
#include "test_util.h"

using namespace ecmoe::data;
using ecmoe::data::test::TempDir;

namespace {

std::vector<Document> sample_docs(const TempDir& dir) {
  for (int i = 0; i < 4; ++i)
    ecmoe::data::test::write_text(dir / ("in/doc" + std::to_string(i) + ".txt"),
                                  ecmoe::data::test::sample_text(i, 150));
  return load_input_files({dir / "in"}).documents;
}

TokenizerTrainConfig small_config() {
  TokenizerTrainConfig c;
  c.vocab_size = 320;
  return c;
}

}  // namespace

TEST(Tokenizer, TrainsWithFixedSpecialIdsAndRoundTrips) {
  TempDir dir("tokenizer");
  const auto docs = sample_docs(dir);
  const TrainedTokenizer trained = train_tokenizer(docs, small_config());
  EXPECT_EQ(trained.sentences, 600);
  ecmoe::write_file_atomically(dir / "t.model", trained.model);
  const Tokenizer tok = Tokenizer::load(dir / "t.model");

  EXPECT_EQ(tok.vocab_size(), 320);
  EXPECT_EQ(tok.piece(kPadId), "<pad>");
  EXPECT_EQ(tok.piece(kUnkId), "<unk>");
  EXPECT_EQ(tok.piece(kBosId), "<s>");
  EXPECT_EQ(tok.piece(kEosId), "</s>");
  EXPECT_EQ(tok.piece(kMaskId), "[MASK]");
  EXPECT_EQ(tok.piece(kSepId), "[SEP]");
  EXPECT_EQ(tok.piece(kClsId), "[CLS]");
  EXPECT_EQ(tok.piece(kFirstOrdinaryId), "<0x00>");  // byte pieces follow the specials
  EXPECT_EQ(tok.piece_id("[SEP]"), kSepId);

  const std::string seen = "the quick brown fox jumps over the lazy dog.";
  const auto ids = tok.encode(seen);
  EXPECT_LT(ids.size(), seen.size() - 5);  // merges were learned
  EXPECT_EQ(tok.decode(ids), seen);
  // Characters never seen in training come back through byte fallback, never as <unk>.
  const std::string unseen = "Zebra \xC3\xBC \xE2\x82\xAC 42!";
  const auto unseen_ids = tok.encode(unseen);
  for (int id : unseen_ids) EXPECT_NE(id, kUnkId);
  EXPECT_EQ(tok.decode(unseen_ids), unseen);
  // The user-defined pieces are matched in text, for fine-tuning inputs (after the dummy-prefix
  // piece, so code that builds model inputs should insert the ids rather than the text).
  const auto pair = tok.encode("[CLS] the dog [SEP] a fox");
  EXPECT_NE(std::find(pair.begin(), pair.end(), kClsId), pair.end());
  EXPECT_NE(std::find(pair.begin(), pair.end(), kSepId), pair.end());
}

TEST(Tokenizer, TrainingIsDeterministic) {
  TempDir dir("tokenizer-det");
  const auto docs = sample_docs(dir);
  auto config = small_config();
  const std::string one = train_tokenizer(docs, config).model;
  // EXPECT_TRUE, not EXPECT_EQ: a failure would print two 250 kB models.
  EXPECT_TRUE(train_tokenizer(docs, config).model == one) << "differs between runs";
  // Sampling is by seed: a smaller budget keeps a deterministic subset.
  config.sample_bytes = 10000;
  const auto a = train_tokenizer(docs, config);
  const auto b = train_tokenizer(docs, config);
  EXPECT_TRUE(a.model == b.model);
  EXPECT_LT(a.bytes, 20000);
  EXPECT_GT(a.bytes, 5000);
}

TEST(Tokenizer, EncodingInPiecesEqualsEncodingWhole) {
  TempDir dir("tokenizer-pieces");
  const auto docs = sample_docs(dir);
  ecmoe::write_file_atomically(dir / "t.model", train_tokenizer(docs, small_config()).model);
  const Tokenizer tok = Tokenizer::load(dir / "t.model");
  // One long line, as a speech is.
  std::string line = ecmoe::data::test::sample_text(9, 400);
  for (char& c : line)
    if (c == '\n') c = ' ';
  line = normalize_whitespace(line);
  ASSERT_GT(line.size(), 10000u);
  const Document doc{"input", "long", line};
  std::vector<int32_t> whole;
  for (int id : tok.encode(line)) whole.push_back(id);
  whole.push_back(kEosId);
  EXPECT_EQ(encode_document(tok, doc), whole);
}

TEST(Tokenizer, ErrorsNameTheProblem) {
  TempDir dir("tokenizer-errors");
  const auto docs = sample_docs(dir);
  auto config = small_config();
  config.vocab_size = 100;
  try {
    train_tokenizer(docs, config);
    FAIL() << "expected an error";
  } catch (const ecmoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab size 100 is too small"), std::string::npos);
  }
  // Enough for the byte pieces but not for the text's characters plus specials.
  config.vocab_size = kMinVocabSize;
  const std::vector<Document> many_chars = {
      {"input", "x", "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"}};
  try {
    train_tokenizer(many_chars, config);
    FAIL() << "expected an error";
  } catch (const ecmoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("too small for this text"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train_tokenizer({}, small_config()), ecmoe::Error);

  ecmoe::data::test::write_text(dir / "garbage.model", "this is not a model");
  EXPECT_THROW(Tokenizer::load(dir / "garbage.model"), ecmoe::Error);
  EXPECT_THROW(Tokenizer::load(dir / "missing.model"), ecmoe::Error);
}
