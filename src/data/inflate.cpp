// zlib's inflate over a buffer held in memory, growing the output a chunk at a time.
#include "data/inflate.h"

#include <zlib.h>

#include <climits>
#include <cstddef>

#include "core/error.h"

namespace ecmoe::data {

std::string inflate_all(std::string_view compressed, Deflate wrapper, std::string_view what) {
  ECMOE_CHECK(compressed.size() <= UINT_MAX, "cannot decompress ", what, ": over 4 GB");
  z_stream z{};
  // 15: the largest window; +16: expect a gzip header and trailer instead of zlib's.
  const int window_bits = wrapper == Deflate::gzip ? 15 + 16 : 15;
  ECMOE_CHECK(inflateInit2(&z, window_bits) == Z_OK, "cannot decompress ", what,
              ": zlib failed to start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  constexpr std::size_t kChunk = std::size_t(1) << 20;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const std::size_t done = out.size();
    out.resize(done + kChunk);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + done);
    z.avail_out = static_cast<uInt>(kChunk);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(done + kChunk - z.avail_out);
    // Z_BUF_ERROR with input left means only that the output chunk was full.
    if (rc == Z_BUF_ERROR && z.avail_in > 0 && z.avail_out == 0) rc = Z_OK;
  }
  const std::string message = z.msg ? z.msg : "";
  inflateEnd(&z);
  ECMOE_CHECK(rc != Z_BUF_ERROR, "cannot decompress ", what, ": the data is cut short");
  ECMOE_CHECK(rc == Z_STREAM_END, "cannot decompress ", what, ": ",
              message.empty() ? "damaged data" : message);
  return out;
}

}  // namespace ecmoe::data
