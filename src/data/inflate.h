// Decompression of the two deflate wrappers that packaged corpora use: zlib streams (the blocks
// of SWORD Bible modules, R's lazy-load data bases) and gzip files (dictd's .dict.dz, R's .rdx).
#pragma once
#include <string>
#include <string_view>

namespace ecmoe::data {

enum class Deflate { zlib, gzip };

// The whole decompressed content of one stream. A damaged or cut-short stream is a one-line error
// naming `what` (e.g. the file it came from); bytes after the end of the stream are ignored.
std::string inflate_all(std::string_view compressed, Deflate wrapper, std::string_view what);

}  // namespace ecmoe::data
