// FNV-1a 64-bit checksums of byte ranges and files. The manifest stores one per file, so a
// flipped byte or a truncated shard is caught before training reads it. Not cryptographic: it
// guards against accidents (crashes, partial copies, disk faults), not against tampering.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/fnv1a.h"

namespace ecmoe::data {

// The hash itself lives in core (core/fnv1a.h); these names keep data:: callers unchanged.
using ecmoe::Fnv1a64;
using ecmoe::fnv1a64;

// Checksum of a whole file; throws ecmoe::Error if it cannot be read.
uint64_t checksum_file(const std::string& path);

// "fnv1a64:" followed by 16 lower-case hex digits, the form stored in manifests.
std::string checksum_to_string(uint64_t checksum);
// Inverse of checksum_to_string; throws ecmoe::Error on anything else.
uint64_t checksum_from_string(std::string_view text);

}  // namespace ecmoe::data
