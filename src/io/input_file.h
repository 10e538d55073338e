// Every file the program reads as input (checkpoints, tokenizers, configs, manifests, token
// shards, task files) is checked here first: it must be a regular file. A FIFO would block the
// read forever, a device such as /dev/zero would read until memory runs out, and a directory fails
// deep inside a library; each is refused with one line instead.
#pragma once
#include <cstdint>
#include <string>

namespace ecmoe {

// Throws ecmoe::Error "<what> <path> does not exist" or "<what> <path> is not a regular file
// (a FIFO)" (a directory, a character device, ...); `what` names the input, e.g. "tokenizer".
void require_regular_file(const std::string& path, const std::string& what);

// The whole file, after require_regular_file; larger than `max_bytes` is an error too.
std::string read_input_file(const std::string& path, const std::string& what,
                            std::uint64_t max_bytes = std::uint64_t(1) << 30);

}  // namespace ecmoe
