// Reading the text of a compressed SWORD module (Debian's sword-text-* and sword-comm-* packages:
// drivers zText/zCom and zText4/zCom4). Each testament is three files:
//   .?zs  block index: per block, u32 offset and u32 size in the .?zz file, u32 size unpacked
//   .?zv  entry index: per entry (module heading, testament, each book, chapter and verse in
//         canonical order), u32 block number, u32 offset in the unpacked block, and the entry's
//         size: u16 (zCom) or u32 (zCom4)
//   .?zz  the blocks, each a zlib stream
// All numbers are little-endian. '?' is b (a block per book) or c (per chapter).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace ecmoe::data {

struct SwordTestament {
  std::string_view block_index;  // .?zs
  std::string_view entry_index;  // .?zv
  std::string_view blocks;       // .?zz
};

// Size of one .?zv record: 10 for zCom/zText, 12 for zCom4/zText4.
inline constexpr int kSwordEntryBytes = 10;
inline constexpr int kSwordEntryBytes4 = 12;

// The non-empty entries of one testament in index order. An entry that several verses share (a
// comment on a verse range) is stored once and listed several times; it is returned once. An
// index that points outside its blocks (or a record size that does not fit the files) is a
// one-line error naming `what`.
std::vector<std::string> sword_entries(const SwordTestament& testament, int entry_bytes,
                                       std::string_view what);

}  // namespace ecmoe::data
