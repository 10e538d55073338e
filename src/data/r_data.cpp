// R's serialization (src/main/serialize.c in R): a header, then items. Each item starts with a
// 32-bit flags word: type in bits 0-7, "has attributes" bit 9, "has tag" bit 10. Vectors give
// their length and elements, then their attributes (a pairlist); pairlist nodes give attributes,
// tag, CAR and CDR in that order. Symbols are remembered in order and later items may refer back
// to them by number.
#include "data/r_data.h"

#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/inflate.h"

namespace ecmoe::data {

namespace {

enum RType : int {
  kSym = 1,
  kList = 2,  // pairlist
  kChar = 9,
  kLogical = 10,
  kInteger = 13,
  kReal = 14,
  kString = 16,
  kVector = 19,  // list
  kExpression = 20,
  kNil = 254,
  kRef = 255,
};

class Reader {
 public:
  Reader(std::string_view bytes, std::string_view what) : bytes_(bytes), what_(what) {}

  RObject document() {
    ECMOE_CHECK(bytes_.substr(0, 2) == "X\n", what_,
                ": not an R serialization in XDR format (it starts with other bytes)");
    at_ = 2;
    const int version = next_int();
    ECMOE_CHECK(version == 2 || version == 3, what_, ": R serialization version ", version,
                " is not supported (2 or 3 are)");
    next_int();                                          // the R version that wrote it
    next_int();                                          // the oldest R version that can read it
    if (version == 3) take(std::size_t(next_length()));  // native encoding name
    return item();
  }

 private:
  RObject item() {
    const uint32_t flags = uint32_t(next_int());
    RObject obj;
    obj.type = int(flags & 0xFF);
    const bool has_attributes = flags & (1u << 9);
    const bool has_tag = flags & (1u << 10);
    switch (obj.type) {
      case kNil:
        return obj;
      case kRef: {
        std::size_t index = flags >> 8;
        if (index == 0) index = std::size_t(next_length());
        ECMOE_CHECK(index >= 1 && index <= symbols_.size(), what_, ": reference ", index,
                    " to an unknown symbol");
        return {kSym, {symbols_[index - 1]}, {}, {}, {}};
      }
      case kSym:
        obj.strings = {single_string(item(), kChar, "a symbol's name")};
        symbols_.push_back(obj.strings[0]);
        return obj;
      case kList:
        return pairlist(has_attributes, has_tag);
      case kChar:
        obj.strings = {char_data()};
        return obj;
      case kLogical:
      case kInteger:
        for (int n = next_length(); n > 0; --n) obj.integers.push_back(next_int());
        break;
      case kReal:
        take(std::size_t(next_length()) * 8);
        break;
      case kString:
        for (int n = next_length(); n > 0; --n)
          obj.strings.push_back(single_string(item(), kChar, "a character vector's element"));
        break;
      case kVector:
      case kExpression:
        for (int n = next_length(); n > 0; --n) obj.items.push_back(item());
        break;
      default:
        fail(what_, ": R object type ", obj.type, " is not supported in data");
    }
    if (has_attributes) obj.names = names_of(item());
    return obj;
  }

  // A pairlist as a list: items are the CARs; names are the tags (for attribute lists).
  RObject pairlist(bool has_attributes, bool has_tag) {
    RObject list;
    list.type = kList;
    for (;;) {
      if (has_attributes) item();
      list.names.push_back(has_tag ? single_string(item(), kSym, "a pairlist tag") : "");
      list.items.push_back(item());
      const uint32_t flags = uint32_t(next_int());
      if ((flags & 0xFF) == kNil) return list;
      ECMOE_CHECK((flags & 0xFF) == kList, what_, ": a pairlist ends in type ", flags & 0xFF);
      has_attributes = flags & (1u << 9);
      has_tag = flags & (1u << 10);
    }
  }

  // The string of a CHARSXP or a symbol, checked to be of the type the format puts there.
  std::string single_string(const RObject& obj, int type, std::string_view role) const {
    ECMOE_CHECK(obj.type == type && obj.strings.size() == 1, what_, ": ", role, " has type ",
                obj.type);
    return obj.strings[0];
  }

  // The "names" attribute of an attribute pairlist.
  static std::vector<std::string> names_of(const RObject& attributes) {
    for (std::size_t i = 0; i < attributes.items.size(); ++i)
      if (i < attributes.names.size() && attributes.names[i] == "names")
        return attributes.items[i].strings;
    return {};
  }

  std::string char_data() {
    const int length = next_int();
    if (length == -1) return "";  // NA_character_
    ECMOE_CHECK(length >= 0, what_, ": a string of length ", length);
    return std::string(take(std::size_t(length)));
  }

  int next_length() {
    const int n = next_int();
    ECMOE_CHECK(n >= 0, what_, ": a length of ", n, " (long vectors are not supported)");
    return n;
  }

  int next_int() {
    const std::string_view b = take(4);
    const auto byte = [&](int k) { return uint32_t(static_cast<unsigned char>(b[k])); };
    return int32_t(byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3));
  }

  std::string_view take(std::size_t n) {
    ECMOE_CHECK(n <= bytes_.size() - at_, what_, ": the serialization is cut short");
    const std::string_view part = bytes_.substr(at_, n);
    at_ += n;
    return part;
  }

  std::string_view bytes_;
  std::string_view what_;
  std::size_t at_ = 0;
  std::vector<std::string> symbols_;
};

const RObject& element(const RObject& list, std::string_view name, std::string_view what) {
  for (std::size_t i = 0; i < list.items.size() && i < list.names.size(); ++i)
    if (list.names[i] == name) return list.items[i];
  fail(what, ": the index has no '", name, "'");
}

uint32_t u32_be(std::string_view b) {
  const auto byte = [&](int k) { return uint32_t(static_cast<unsigned char>(b[k])); };
  return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

}  // namespace

RObject r_unserialize(std::string_view bytes, std::string_view what) {
  return Reader(bytes, what).document();
}

std::vector<std::pair<std::string, std::vector<std::string>>> r_character_vectors(
    std::string_view rdx_gzip, std::string_view rdb, std::string_view what) {
  const std::string rdx = inflate_all(rdx_gzip, Deflate::gzip, what);
  const RObject index = r_unserialize(rdx, what);
  const RObject& compressed = element(index, "compressed", what);
  // 1 (TRUE): zlib. R writes 2 (bzip2) and 3 (xz) with a type byte first; none of ours does.
  ECMOE_CHECK(compressed.integers.size() == 1 && compressed.integers[0] == 1, what,
              ": only zlib-compressed data bases are supported");
  const RObject& variables = element(index, "variables", what);
  ECMOE_CHECK(variables.names.size() == variables.items.size(), what, ": unnamed objects");
  std::vector<std::pair<std::string, std::vector<std::string>>> vectors;
  for (std::size_t i = 0; i < variables.items.size(); ++i) {
    const std::vector<int>& place = variables.items[i].integers;  // offset, length
    ECMOE_CHECK(place.size() == 2 && place[0] >= 0 && place[1] >= 4 &&
                    std::size_t(place[0]) + std::size_t(place[1]) <= rdb.size(),
                what, ": object ", variables.names[i], " lies outside the data base");
    const std::string_view record = rdb.substr(std::size_t(place[0]), std::size_t(place[1]));
    const std::string serialized = inflate_all(record.substr(4), Deflate::zlib, what);
    ECMOE_CHECK(serialized.size() == u32_be(record), what, ": object ", variables.names[i],
                " unpacks to ", serialized.size(), " bytes, its header says ", u32_be(record));
    RObject object = r_unserialize(serialized, what);
    if (object.type == kString) vectors.emplace_back(variables.names[i], std::move(object.strings));
  }
  return vectors;
}

}  // namespace ecmoe::data
