// One pass over the lines: cleaned lines accumulate until a paragraph break (or a line break, for
// text without blank lines) comes after the document is long enough.
#include "data/document_cut.h"

#include <cstddef>
#include <utility>

#include "data/clean.h"

namespace ecmoe::data {

std::vector<std::string> cut_documents(std::string_view raw, int64_t document_bytes) {
  std::vector<std::string> docs;
  if (document_bytes <= 0) {
    std::string text = clean_text(raw);
    if (!text.empty()) docs.push_back(std::move(text));
    return docs;
  }
  const std::size_t target = std::size_t(document_bytes);
  std::string current;
  const auto close = [&] {
    if (!current.empty()) docs.push_back(std::move(current));
    current.clear();
  };
  std::size_t start = 0;
  while (start <= raw.size()) {  // the same lines as clean_text
    std::size_t end = raw.find('\n', start);
    if (end == std::string_view::npos) end = raw.size();
    const std::string line = normalize_whitespace(raw.substr(start, end - start));
    start = end + 1;
    if (line.empty()) {
      if (current.size() >= target) close();  // a paragraph break after enough text
      continue;
    }
    if (current.size() >= 2 * target) close();  // no paragraph break came
    if (!current.empty()) current += '\n';
    current += line;
  }
  close();
  return docs;
}

}  // namespace ecmoe::data
