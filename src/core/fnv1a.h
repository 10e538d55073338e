// FNV-1a 64-bit hash of bytes: xor each byte into the state, then multiply by the FNV prime.
// A fixed function (unlike std::hash), so what is derived from it (checksums in manifests, the
// random streams of named tensors) is the same under every compiler and standard library.
// Not cryptographic.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ecmoe {

class Fnv1a64 {
 public:
  void update(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    uint64_t h = state_;
    for (std::size_t i = 0; i < bytes; ++i) {
      h ^= p[i];
      h *= 0x100000001b3ULL;
    }
    state_ = h;
  }
  constexpr void update(std::string_view text) {
    uint64_t h = state_;
    for (const char c : text) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ULL;
    }
    state_ = h;
  }
  constexpr uint64_t value() const { return state_; }

 private:
  uint64_t state_ = 0xcbf29ce484222325ULL;
};

constexpr uint64_t fnv1a64(std::string_view bytes) {
  Fnv1a64 h;
  h.update(bytes);
  return h.value();
}

}  // namespace ecmoe
