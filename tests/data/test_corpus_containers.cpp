// The compressed containers that packaged corpora come in, on data the tests build themselves:
// zlib and gzip streams, a SWORD module's testament, an R lazy-load data base.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "data/inflate.h"
#include "data/r_data.h"
#include "data/sword_module.h"
#include "support/core/error_of.h"

using namespace ecmoe::data;
using ecmoe::testing::error_of;

namespace {

std::string deflate_all(const std::string& text, Deflate wrapper) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, wrapper == Deflate::gzip ? 15 + 16 : 15, 8,
                         Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&z, uLong(text.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = uInt(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void put_u32_le(std::string& out, uint32_t v) {
  for (int k = 0; k < 4; ++k) out += char(v >> (8 * k) & 0xFF);
}

void put_u32_be(std::string& out, uint32_t v) {
  for (int k = 3; k >= 0; --k) out += char(v >> (8 * k) & 0xFF);
}

}  // namespace

TEST(CorpusContainers, InflateZlibAndGzip) {
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "line " + std::to_string(i) + "\n";  // > one chunk
  EXPECT_EQ(inflate_all(deflate_all(text, Deflate::zlib), Deflate::zlib, "t"), text);
  EXPECT_EQ(inflate_all(deflate_all(text, Deflate::gzip), Deflate::gzip, "t"), text);
  EXPECT_EQ(inflate_all(deflate_all("", Deflate::zlib), Deflate::zlib, "t"), "");
  const std::string packed = deflate_all(text, Deflate::zlib);
  const std::string cut = error_of([&] {
    inflate_all(std::string_view(packed).substr(0, packed.size() / 2), Deflate::zlib, "a.bzz");
  });
  EXPECT_NE(cut.find("cannot decompress a.bzz: the data is cut short"), std::string::npos) << cut;
  const std::string wrong = error_of([&] { inflate_all(packed, Deflate::gzip, "a.dz"); });
  EXPECT_NE(wrong.find("cannot decompress a.dz:"), std::string::npos) << wrong;
  EXPECT_EQ(wrong.find('\n'), std::string::npos) << wrong;
}

TEST(CorpusContainers, SwordEntriesFollowTheEntryIndex) {
  // Two blocks; entries: empty heading, "Gen 1:1" comment shared by two verses, one in block 1.
  const std::string block0 = "<chapter osisID=\"Gen.1\" sID=\"Gen.1\"/>In the beginning.";
  const std::string block1 = "Exodus intro.Moses.";
  std::string blocks, block_index;
  for (const std::string* b : {&block0, &block1}) {
    const std::string packed = deflate_all(*b, Deflate::zlib);
    put_u32_le(block_index, uint32_t(blocks.size()));
    put_u32_le(block_index, uint32_t(packed.size()));
    put_u32_le(block_index, uint32_t(b->size()));
    blocks += packed;
  }
  const std::vector<std::vector<uint32_t>> records = {
      {0, 0, 0},  // module heading: empty
      {0, 0, uint32_t(block0.size())},
      {0, 0, uint32_t(block0.size())},  // the next verse links to the same comment
      {1, 13, 6},
  };
  for (const int bytes : {kSwordEntryBytes, kSwordEntryBytes4}) {
    std::string entry_index;
    for (const auto& r : records) {
      put_u32_le(entry_index, r[0]);
      put_u32_le(entry_index, r[1]);
      if (bytes == kSwordEntryBytes) {
        entry_index += char(r[2] & 0xFF);
        entry_index += char(r[2] >> 8 & 0xFF);
      } else {
        put_u32_le(entry_index, r[2]);
      }
    }
    const auto entries = sword_entries({block_index, entry_index, blocks}, bytes, "ot.bzz");
    ASSERT_EQ(entries.size(), 2u) << bytes;
    EXPECT_EQ(entries[0], block0);
    EXPECT_EQ(entries[1], "Moses.");
    // A record size that does not fit the index, an entry past its block.
    const std::string misfit = error_of([&] {
      sword_entries({block_index, entry_index + "x", blocks}, bytes, "ot.bzz");
    });
    EXPECT_NE(misfit.find("ot.bzz: entry index of"), std::string::npos) << misfit;
    std::string past = entry_index;
    past[std::size_t(bytes) * 3 + 4] = char(14);  // the last entry: offset 14, size 6 > 19 bytes
    const std::string outside = error_of([&] {
      sword_entries({block_index, past, blocks}, bytes, "ot.bzz");
    });
    EXPECT_NE(outside.find("ot.bzz: entry 3 lies outside its block"), std::string::npos) << outside;
  }
  // An empty testament (a commentary on the Old Testament only).
  std::string empty_index;
  for (int i = 0; i < 3; ++i)
    put_u32_le(empty_index, 0), put_u32_le(empty_index, 0), put_u32_le(empty_index, 0);
  EXPECT_TRUE(sword_entries({"", empty_index, ""}, kSwordEntryBytes4, "nt.czz").empty());
}

namespace {

// R's XDR serialization, as R's serialize() writes plain data (version 3).
class RWriter {
 public:
  RWriter() {
    out_ = "X\n";
    put_u32_be(out_, 3);
    put_u32_be(out_, 0x040201);  // R 4.2.1
    put_u32_be(out_, 0x030500);
    put_u32_be(out_, 5);
    out_ += "UTF-8";
  }
  void flags(uint32_t type, bool attributes = false, bool tag = false) {
    put_u32_be(out_, type | (attributes ? 1u << 9 : 0) | (tag ? 1u << 10 : 0));
  }
  void integer(int32_t v) { put_u32_be(out_, uint32_t(v)); }
  void chars(const std::string& s) {
    put_u32_be(out_, 0x40009);  // CHARSXP, UTF-8 flag
    integer(int32_t(s.size()));
    out_ += s;
  }
  void strings(const std::vector<std::string>& v) {
    flags(16);
    integer(int32_t(v.size()));
    for (const auto& s : v) chars(s);
  }
  // The attribute pairlist {names = v}, its symbol written in full the first time.
  void names(const std::vector<std::string>& v) {
    flags(2, false, true);
    if (names_written_) {
      put_u32_be(out_, (1u << 8) | 255);  // reference to symbol 1
    } else {
      flags(1);
      chars("names");
      names_written_ = true;
    }
    strings(v);
    flags(254);
  }
  std::string bytes() const { return out_; }

 private:
  std::string out_;
  bool names_written_ = false;
};

}  // namespace

TEST(CorpusContainers, RCharacterVectorsOfALazyLoadDataBase) {
  // Two objects: a character vector (with an NA) and an integer vector, which is skipped.
  RWriter novel;
  novel.flags(16);
  novel.integer(3);
  novel.chars("EMMA");
  novel.flags(9);
  novel.integer(-1);  // NA_character_
  novel.chars("CHAPTER I");
  RWriter numbers;
  numbers.flags(13);
  numbers.integer(2);
  numbers.integer(7);
  numbers.integer(8);
  std::string rdb;
  std::vector<std::pair<int, int>> places;
  for (const auto& object : {novel.bytes(), numbers.bytes()}) {
    std::string record;
    put_u32_be(record, uint32_t(object.size()));
    record += deflate_all(object, Deflate::zlib);
    places.emplace_back(int(rdb.size()), int(record.size()));
    rdb += record;
  }
  RWriter
      index;  // list(variables = list(emma = c(0, n), ...), references = list(), compressed = TRUE)
  index.flags(19, true);
  index.integer(3);
  index.flags(19, true);
  index.integer(2);
  for (const auto& [offset, length] : places) {
    index.flags(13);
    index.integer(2);
    index.integer(offset);
    index.integer(length);
  }
  index.names({"emma", "numbers"});
  index.flags(19, true);
  index.integer(0);
  index.names({});
  index.flags(10);
  index.integer(1);
  index.integer(1);
  index.names({"variables", "references", "compressed"});
  const std::string rdx = deflate_all(index.bytes(), Deflate::gzip);

  const auto vectors = r_character_vectors(rdx, rdb, "Rdata.rdb");
  ASSERT_EQ(vectors.size(), 1u);
  EXPECT_EQ(vectors[0].first, "emma");
  EXPECT_EQ(vectors[0].second, (std::vector<std::string>{"EMMA", "", "CHAPTER I"}));

  const std::string cut = error_of([&] { r_character_vectors(rdx, rdb.substr(0, 20), "R.rdb"); });
  EXPECT_NE(cut.find("R.rdb: object emma lies outside the data base"), std::string::npos) << cut;
  RWriter closure;
  closure.flags(3);  // a function: not data
  const std::string unsupported = error_of([&] { r_unserialize(closure.bytes(), "f.rds"); });
  EXPECT_NE(unsupported.find("f.rds: R object type 3 is not supported"), std::string::npos)
      << unsupported;
  EXPECT_NE(error_of([&] { r_unserialize("A\n1\n", "a.rds"); }).find("not an R serialization"),
            std::string::npos);
}
