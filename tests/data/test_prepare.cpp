// prepare() on user files, and TokenDataset reading what it wrote: round trip, reuse on a second
// run, and detection plus rebuild of a damaged or truncated shard.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/input_files.h"
#include "data/prepare.h"
#include "data/shard_writer.h"
#include "data/split.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "test_util.h"

using namespace ecmoe::data;
using ecmoe::data::test::TempDir;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  TempDir dir{"prepare"};
  std::vector<std::string> log;
  PrepareConfig config;
  Fixture() {
    for (int i = 0; i < 8; ++i)
      ecmoe::data::test::write_text(dir / ("in/part" + std::to_string(i) + ".txt"),
                                    ecmoe::data::test::sample_text(100 + i, 60));
    config.inputs = {dir / "in"};
    config.out_dir = dir / "out";
    config.vocab_size = 320;
    config.val_fraction = 0.2;
    config.log = [this](const std::string& line) { log.push_back(line); };
  }
  bool logged(const std::string& fragment) const {
    for (const auto& l : log)
      if (l.find(fragment) != std::string::npos) return true;
    return false;
  }
};

std::string open_error(const std::string& dir, const std::string& split) {
  try {
    TokenDataset::open(dir, split);
  } catch (const ecmoe::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Prepare, WritesShardsThatTheReaderReturnsExactly) {
  Fixture f;
  const PrepareResult result = prepare(f.config);
  EXPECT_FALSE(result.reused);
  const Manifest& m = result.manifest;
  EXPECT_EQ(m.corpus, "input");
  EXPECT_EQ(m.vocab_size, 320);
  EXPECT_EQ(m.dtype, TokenDtype::u16);
  EXPECT_EQ(m.splits.at("train").documents + m.splits.at("val").documents, 8);
  EXPECT_GE(m.splits.at("val").documents, 1);

  // Re-encode the documents independently and compare with the stored stream.
  const Tokenizer tok = Tokenizer::load(f.config.out_dir + "/tokenizer.model");
  const auto docs = load_input_files(f.config.inputs).documents;
  const auto split = split_documents(docs, {f.config.val_fraction, f.config.seed});
  const TokenStream expected = encode_documents(tok, split.train);

  const TokenDataset train = TokenDataset::open(f.config.out_dir, "train");
  ASSERT_EQ(train.size(), int64_t(expected.tokens.size()));
  EXPECT_EQ(train.vocab_size(), 320);
  EXPECT_EQ(train.documents(), int64_t(split.train.size()));
  for (int64_t i = 0; i < train.size(); ++i) ASSERT_EQ(int32_t(train[i]), expected.tokens[i]);
  EXPECT_EQ(train[train.size() - 1], uint32_t(kEosId));
  std::vector<int32_t> window(10);
  train.read(5, window);
  EXPECT_EQ(window[0], expected.tokens[5]);
  EXPECT_THROW(train.read(train.size() - 3, window), ecmoe::Error);
  EXPECT_EQ(TokenDataset::open(f.config.out_dir, "val").size(), m.splits.at("val").tokens);
  EXPECT_NE(open_error(f.config.out_dir, "test").find("no split 'test'"), std::string::npos);
}

TEST(Prepare, EncodingDoesNotDependOnThreadCount) {
  Fixture f;
  prepare(f.config);
  const Tokenizer tok = Tokenizer::load(f.config.out_dir + "/tokenizer.model");
  const auto docs = load_input_files(f.config.inputs).documents;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const TokenStream one = encode_documents(tok, docs);
  omp_set_num_threads(3);
  const TokenStream three = encode_documents(tok, docs);
  omp_set_num_threads(saved);
  EXPECT_EQ(one.tokens, three.tokens);
  EXPECT_EQ(one.tokens_by_source, three.tokens_by_source);
}

TEST(Prepare, SecondRunReusesAndForceRebuilds) {
  Fixture f;
  const auto first = prepare(f.config);
  f.log.clear();
  const auto second = prepare(f.config);
  EXPECT_TRUE(second.reused);
  EXPECT_TRUE(f.logged("reusing"));
  EXPECT_EQ(manifest_to_json(second.manifest), manifest_to_json(first.manifest));

  f.config.force = true;
  const auto forced = prepare(f.config);
  EXPECT_FALSE(forced.reused);
  // Deterministic: rebuilding gives the same files.
  EXPECT_EQ(manifest_to_json(forced.manifest), manifest_to_json(first.manifest));

  // Changed settings or changed input text: refused without force (checkpoints trained on the
  // folder would stop matching it), rebuilt with it.
  const auto refused = [&] {
    try {
      prepare(f.config);
    } catch (const ecmoe::Error& e) {
      return std::string(e.what()).find("pass --force to replace it") != std::string::npos;
    }
    return false;
  };
  f.config.force = false;
  f.config.seed = 99;
  EXPECT_TRUE(refused());
  f.config.force = true;
  EXPECT_FALSE(prepare(f.config).reused);
  f.config.force = false;
  EXPECT_TRUE(prepare(f.config).reused);
  ecmoe::data::test::write_text(f.dir / "in/part0.txt", "completely different text now.\n");
  EXPECT_TRUE(refused());
  f.config.force = true;
  EXPECT_FALSE(prepare(f.config).reused);
}

TEST(Prepare, FlippedByteIsRejectedByReaderThenRebuilt) {
  Fixture f;
  const auto first = prepare(f.config);
  const std::string shard = f.config.out_dir + "/train.bin";
  ecmoe::data::test::flip_byte(shard, 11);
  EXPECT_NE(open_error(f.config.out_dir, "train").find("fails its checksum"), std::string::npos);
  EXPECT_EQ(open_error(f.config.out_dir, "val"), "");  // the other split is intact

  f.log.clear();
  const auto again = prepare(f.config);
  EXPECT_FALSE(again.reused);
  EXPECT_TRUE(f.logged("train.bin fails its checksum"));
  EXPECT_TRUE(f.logged("reusing " + f.config.out_dir + "/tokenizer.model"));
  EXPECT_TRUE(f.logged("reusing " + f.config.out_dir + "/val.bin"));  // intact, not re-encoded
  EXPECT_TRUE(f.logged("wrote " + f.config.out_dir + "/train.bin"));
  EXPECT_EQ(manifest_to_json(again.manifest), manifest_to_json(first.manifest));
  EXPECT_EQ(open_error(f.config.out_dir, "train"), "");
}

TEST(Prepare, TruncatedShardIsRejectedByReaderThenRebuilt) {
  Fixture f;
  const auto first = prepare(f.config);
  const std::string shard = f.config.out_dir + "/val.bin";
  fs::resize_file(shard, fs::file_size(shard) - 1);
  EXPECT_NE(open_error(f.config.out_dir, "val").find("partial or damaged"), std::string::npos);
  const auto again = prepare(f.config);
  EXPECT_FALSE(again.reused);
  EXPECT_EQ(again.manifest.splits.at("val").checksum, first.manifest.splits.at("val").checksum);
  EXPECT_EQ(open_error(f.config.out_dir, "val"), "");

  // A damaged tokenizer is retrained (to the same model), and a missing manifest rebuilds all.
  ecmoe::data::test::flip_byte(f.config.out_dir + "/tokenizer.model", 100);
  EXPECT_EQ(prepare(f.config).manifest.tokenizer.checksum, first.manifest.tokenizer.checksum);
  fs::remove(f.config.out_dir + "/manifest.json");
  EXPECT_NE(open_error(f.config.out_dir, "train").find("manifest.json is missing"),
            std::string::npos);
  EXPECT_FALSE(prepare(f.config).reused);
}

TEST(Prepare, BadInputIsOneClearError) {
  Fixture f;
  const auto error_of = [&](const PrepareConfig& c) -> std::string {
    try {
      prepare(c);
    } catch (const ecmoe::Error& e) {
      return e.what();
    }
    return "";
  };
  auto c = f.config;
  c.inputs = {f.dir / "nowhere.txt"};
  EXPECT_NE(error_of(c).find("nowhere.txt does not exist"), std::string::npos);

  ecmoe::data::test::write_text(f.dir / "blank/a.txt", "  \n\t\n");
  ecmoe::data::test::write_text(f.dir / "blank/b.txt", "");
  c.inputs = {f.dir / "blank"};
  EXPECT_NE(error_of(c).find("no text after cleaning"), std::string::npos);

  ecmoe::data::test::write_text(f.dir / "latin1.txt", "caf\xE9\n");
  c.inputs = {f.dir / "latin1.txt"};
  EXPECT_NE(error_of(c).find("is not UTF-8 text (invalid byte at offset 3)"), std::string::npos);

  c = f.config;
  c.vocab_size = 50;
  EXPECT_NE(error_of(c).find("vocab size 50 is too small"), std::string::npos);

  c = f.config;
  c.inputs.clear();
  c.corpus = "klingon";
  EXPECT_NE(error_of(c).find("unknown corpus 'klingon'"), std::string::npos);
  for (const auto& e : {error_of(c)}) EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(TokenDataset, RejectsMissingFolderAndIdsOutsideVocab) {
  Fixture f;
  EXPECT_NE(open_error(f.dir / "empty", "train").find("run `ecmoe prepare`"), std::string::npos);
  const auto first = prepare(f.config);
  // A manifest that claims a smaller vocabulary than the ids in the shard.
  Manifest m = first.manifest;
  m.vocab_size = 5;
  write_manifest(f.config.out_dir, m);
  EXPECT_NE(open_error(f.config.out_dir, "train").find("but the vocabulary has 5 pieces"),
            std::string::npos);
}
