// Reading the character vectors of an R package's data (Debian's r-cran-* packages): the
// lazy-load data base data/Rdata.rdx (a gzip-compressed serialized index: for each object its
// offset and length in the .rdb) and data/Rdata.rdb (each object: a big-endian u32 of its
// serialized size, then the serialization as a zlib stream). Only what R writes for plain data
// is understood: the XDR serialization (versions 2 and 3) of vectors, lists, pairlists, symbols
// and references; anything else (environments, functions, ALTREP objects) is a one-line error.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ecmoe::data {

// A serialized R object reduced to what a text corpus needs.
struct RObject {
  int type = 0;                      // R's SEXPTYPE: 16 character vector, 19 list, 13 integer, ...
  std::vector<std::string> strings;  // a character vector's elements (NA as ""), a symbol's name
  std::vector<int> integers;         // an integer or logical vector
  std::vector<RObject> items;        // a list's elements
  std::vector<std::string> names;    // the "names" attribute, if any
};

// One object from R's serialize() output (uncompressed).
RObject r_unserialize(std::string_view bytes, std::string_view what);

// Every character vector of a lazy-load data base, by object name, in the index's order. Other
// objects are skipped.
std::vector<std::pair<std::string, std::vector<std::string>>> r_character_vectors(
    std::string_view rdx_gzip, std::string_view rdb, std::string_view what);

}  // namespace ecmoe::data
