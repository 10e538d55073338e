// Checksums of files and their text form, over core/fnv1a.h.
#include "data/checksum.h"

#include <cstdio>
#include <memory>
#include <vector>

#include "core/error.h"

namespace ecmoe::data {

uint64_t checksum_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  ECMOE_CHECK(file != nullptr, "cannot open ", path, " for reading");
  std::vector<char> buffer(1 << 20);
  Fnv1a64 h;
  while (true) {
    const std::size_t got = std::fread(buffer.data(), 1, buffer.size(), file.get());
    h.update(buffer.data(), got);
    if (got < buffer.size()) break;
  }
  ECMOE_CHECK(!std::ferror(file.get()), "read error on ", path);
  return h.value();
}

std::string checksum_to_string(uint64_t checksum) {
  char text[32];
  std::snprintf(text, sizeof(text), "fnv1a64:%016llx", static_cast<unsigned long long>(checksum));
  return text;
}

uint64_t checksum_from_string(std::string_view text) {
  constexpr std::string_view prefix = "fnv1a64:";
  ECMOE_CHECK(text.size() == prefix.size() + 16 && text.substr(0, prefix.size()) == prefix,
              "malformed checksum '", text, "' (expected fnv1a64: and 16 hex digits)");
  uint64_t value = 0;
  for (char c : text.substr(prefix.size())) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      fail("malformed checksum '", text, "' (expected lower-case hex digits)");
    }
    value = (value << 4) | uint64_t(digit);
  }
  return value;
}

}  // namespace ecmoe::data
