// Blocks are unpacked once each, then entries are cut out of them by the entry index.
#include "data/sword_module.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <utility>

#include "core/error.h"
#include "data/inflate.h"

namespace ecmoe::data {

namespace {

uint32_t u32_le(std::string_view bytes, std::size_t at) {
  const auto b = [&](std::size_t k) { return uint32_t(static_cast<unsigned char>(bytes[at + k])); };
  return b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24;
}

uint32_t u16_le(std::string_view bytes, std::size_t at) {
  return uint32_t(static_cast<unsigned char>(bytes[at])) |
         uint32_t(static_cast<unsigned char>(bytes[at + 1])) << 8;
}

std::vector<std::string> unpack_blocks(const SwordTestament& t, std::string_view what) {
  constexpr std::size_t kRecord = 12;
  ECMOE_CHECK(t.block_index.size() % kRecord == 0, what, ": block index of ", t.block_index.size(),
              " bytes is not a whole number of ", kRecord, "-byte records");
  std::vector<std::string> blocks;
  for (std::size_t at = 0; at < t.block_index.size(); at += kRecord) {
    const uint64_t offset = u32_le(t.block_index, at);
    const uint64_t size = u32_le(t.block_index, at + 4);
    const uint64_t unpacked = u32_le(t.block_index, at + 8);
    ECMOE_CHECK(offset + size <= t.blocks.size(), what, ": block ", blocks.size(),
                " lies outside the block file");
    std::string block = inflate_all(t.blocks.substr(offset, size), Deflate::zlib, what);
    ECMOE_CHECK(block.size() == unpacked, what, ": block ", blocks.size(), " unpacks to ",
                block.size(), " bytes, its index says ", unpacked);
    blocks.push_back(std::move(block));
  }
  return blocks;
}

}  // namespace

std::vector<std::string> sword_entries(const SwordTestament& testament, int entry_bytes,
                                       std::string_view what) {
  ECMOE_CHECK(entry_bytes == kSwordEntryBytes || entry_bytes == kSwordEntryBytes4,
              "SWORD entry records are 10 or 12 bytes, not ", entry_bytes);
  const std::string_view index = testament.entry_index;
  ECMOE_CHECK(index.size() % std::size_t(entry_bytes) == 0, what, ": entry index of ", index.size(),
              " bytes is not a whole number of ", entry_bytes, "-byte records");
  const std::vector<std::string> blocks = unpack_blocks(testament, what);
  std::vector<std::string> entries;
  std::set<std::pair<uint32_t, uint32_t>> seen;  // (block, offset) of entries already returned
  for (std::size_t at = 0; at < index.size(); at += std::size_t(entry_bytes)) {
    const uint32_t block = u32_le(index, at);
    const uint32_t offset = u32_le(index, at + 4);
    const uint32_t size =
        entry_bytes == kSwordEntryBytes ? u16_le(index, at + 8) : u32_le(index, at + 8);
    if (size == 0 || !seen.insert({block, offset}).second) continue;
    ECMOE_CHECK(block < blocks.size() && uint64_t(offset) + size <= blocks[block].size(), what,
                ": entry ", at / std::size_t(entry_bytes), " lies outside its block");
    entries.push_back(blocks[block].substr(offset, size));
  }
  return entries;
}

}  // namespace ecmoe::data
