// How a user's text file becomes documents (the unit the train/validation split assigns and the
// token stream ends with EOS): cut into pieces of about `document_bytes` of cleaned text at
// paragraph breaks, so the split can hold out the requested share of a corpus of few, long files.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ecmoe::data {

// Default of `prepare --doc-bytes`: a few pages of prose per document.
inline constexpr int64_t kDefaultDocumentBytes = 8192;

// The cleaned documents of one file's raw text (valid UTF-8), in order; none when nothing is left
// after cleaning. Lines are cleaned as clean_text does (clean.h). document_bytes 0: the whole file
// is one document (clean_text(raw)). Otherwise a document ends at the first paragraph break (a
// blank line) after it holds at least document_bytes bytes, or, in text without blank lines, at
// the first line break after it holds at least twice that; the rest of the file is the last
// document, however short. Joining the documents with '\n' gives clean_text(raw).
std::vector<std::string> cut_documents(std::string_view raw, int64_t document_bytes);

}  // namespace ecmoe::data
