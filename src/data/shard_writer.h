// Token shards: one flat stream per split, every document's ids followed by one EOS, stored as
// little-endian uint16 (vocab <= 65535) or uint32 with no header; the manifest holds the count,
// dtype and checksum.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/document.h"
#include "data/manifest.h"
#include "data/tokenizer.h"

namespace ecmoe::data {

struct TokenStream {
  std::vector<int32_t> tokens;
  int64_t documents = 0;
  std::vector<int64_t> document_tokens;  // each document's tokens, EOS included, in order
  std::map<std::string, int64_t> tokens_by_source;  // EOS tokens included
  std::map<std::string, int64_t> documents_by_source;
};

// The ids of one document: its lines encoded one by one (long ones in pieces cut at spaces) and
// concatenated, then EOS.
std::vector<int32_t> encode_document(const Tokenizer& tokenizer, const Document& doc);

// Encodes documents in parallel (OpenMP over documents) and concatenates them in input order, so
// the stream is the same for any thread count.
TokenStream encode_documents(const Tokenizer& tokenizer, const std::vector<Document>& docs);

// Writes <dir>/<file> atomically and returns its manifest entry. Throws ecmoe::Error if an id does
// not fit the dtype.
ShardEntry write_shard(const std::string& dir, const std::string& file, const TokenStream& stream,
                       TokenDtype dtype);

}  // namespace ecmoe::data
