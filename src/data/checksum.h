// FNV-1a 64-bit checksums of byte ranges and files. The manifest stores one per file, so a
// flipped byte or a truncated shard is caught before training reads it. Not cryptographic: it
// guards against accidents (crashes, partial copies, disk faults), not against tampering.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ecmoe::data {

class Fnv1a64 {
 public:
  void update(const void* data, std::size_t bytes);
  void update(std::string_view text) { update(text.data(), text.size()); }
  uint64_t value() const { return state_; }

 private:
  uint64_t state_ = 0xcbf29ce484222325ULL;
};

uint64_t fnv1a64(std::string_view bytes);

// Checksum of a whole file; throws ecmoe::Error if it cannot be read.
uint64_t checksum_file(const std::string& path);

// "fnv1a64:" followed by 16 lower-case hex digits, the form stored in manifests.
std::string checksum_to_string(uint64_t checksum);
// Inverse of checksum_to_string; throws ecmoe::Error on anything else.
uint64_t checksum_from_string(std::string_view text);

}  // namespace ecmoe::data
