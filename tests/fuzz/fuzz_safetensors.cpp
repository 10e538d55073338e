// Fuzz target: a safetensors file's bytes through the checkpoint reader (SafetensorsFile, the
// code that opens every checkpoint), then every accessor a loader uses on what it accepted.
// Rejections are ecmoe::Error; anything else (a crash, a sanitizer report, another exception)
// is a finding. docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = ecmoe::SafetensorsFile::from_bytes("fuzz.safetensors",
                                                         std::as_bytes(std::span(data, size)));
    for (const std::string& name : file.names()) {
      const ecmoe::TensorInfo& t = file.info(name);
      // A validated header promises that its spans lie inside the buffer and match the shapes:
      // copying each tensor out reads every byte it claims (ASan sees the owned copy).
      const auto bytes = file.bytes(name);
      std::vector<std::byte> copy(bytes.size());
      file.read(name, t.dtype, t.shape, copy.data());
      if (std::size_t(t.numel) * ecmoe::dtype_size(t.dtype) != copy.size()) __builtin_trap();
    }
  } catch (const ecmoe::Error&) {
  }
  return 0;
}
