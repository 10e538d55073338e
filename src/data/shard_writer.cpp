// Encoding is parallel over documents into per-document buffers, joined in order afterwards.
#include "data/shard_writer.h"

#include <omp.h>

#include <cstddef>
#include <exception>
#include <string_view>

#include "core/error.h"
#include "data/checksum.h"
#include "data/clean.h"
#include "io/atomic_file.h"

namespace ecmoe::data {

namespace {
// Speech-long lines are encoded in pieces (see cut_long_line): same ids, less time.
constexpr std::size_t kEncodePieceBytes = 4096;
}  // namespace

std::vector<int32_t> encode_document(const Tokenizer& tokenizer, const Document& doc) {
  std::vector<int32_t> ids;
  ids.reserve(doc.text.size() / 3);
  std::size_t start = 0;
  while (start < doc.text.size()) {
    std::size_t end = doc.text.find('\n', start);
    if (end == std::string::npos) end = doc.text.size();
    const std::string_view line = std::string_view(doc.text).substr(start, end - start);
    for (const auto piece : cut_long_line(line, kEncodePieceBytes)) {
      const auto piece_ids = tokenizer.encode(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    start = end + 1;
  }
  ids.push_back(kEosId);
  return ids;
}

TokenStream encode_documents(const Tokenizer& tokenizer, const std::vector<Document>& docs) {
  const int64_t n = int64_t(docs.size());
  std::vector<std::vector<int32_t>> encoded(docs.size());
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      encoded[i] = encode_document(tokenizer, docs[i]);
    } catch (...) {
#pragma omp critical(ecmoe_encode_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  TokenStream stream;
  std::size_t total = 0;
  for (const auto& e : encoded) total += e.size();
  stream.tokens.reserve(total);
  for (int64_t i = 0; i < n; ++i) {
    stream.tokens.insert(stream.tokens.end(), encoded[i].begin(), encoded[i].end());
    stream.tokens_by_source[docs[i].source] += int64_t(encoded[i].size());
    stream.document_tokens.push_back(int64_t(encoded[i].size()));
    stream.documents_by_source[docs[i].source] += 1;
    std::vector<int32_t>().swap(encoded[i]);
  }
  stream.documents = n;
  return stream;
}

ShardEntry write_shard(const std::string& dir, const std::string& file, const TokenStream& stream,
                       TokenDtype dtype) {
  const int width = dtype_bytes(dtype);
  const uint32_t max_id = dtype == TokenDtype::u16 ? 0xFFFFu : 0xFFFFFFFFu;
  std::vector<unsigned char> bytes(stream.tokens.size() * std::size_t(width));
  for (std::size_t i = 0; i < stream.tokens.size(); ++i) {
    const int32_t id = stream.tokens[i];
    ECMOE_CHECK(id >= 0 && uint32_t(id) <= max_id, "token id ", id, " does not fit ",
                dtype_name(dtype));
    for (int b = 0; b < width; ++b) bytes[i * width + b] = (uint32_t(id) >> (8 * b)) & 0xFF;
  }
  write_file_atomically(
      dir + "/" + file,
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));

  ShardEntry entry;
  entry.file = file;
  entry.bytes = int64_t(bytes.size());
  Fnv1a64 h;
  h.update(bytes.data(), bytes.size());
  entry.checksum = h.value();
  entry.tokens = int64_t(stream.tokens.size());
  entry.documents = stream.documents;
  return entry;
}

}  // namespace ecmoe::data
