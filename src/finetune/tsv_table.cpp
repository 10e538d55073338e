#include "finetune/tsv_table.h"

#include <algorithm>
#include <cstddef>

#include "core/error.h"
#include "data/clean.h"

namespace ecmoe::finetune {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? tab : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return fields;
}

bool read_tsv_line(std::istream& in, std::string& line, int64_t& line_no, const std::string& path) {
  if (!std::getline(in, line)) return false;
  ++line_no;
  const auto bad = data::find_invalid_utf8(line);
  ECMOE_CHECK(!bad, path, ":", line_no, ": not UTF-8 text (invalid byte at column ",
              bad.value_or(0) + 1, ")");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

std::string TsvHeader::columns_found() const {
  std::string text;
  for (const std::string& c : columns) text += (text.empty() ? "'" : ", '") + c + "'";
  return text;
}

TsvHeader read_tsv_header(std::istream& in, const std::string& path) {
  static const std::string kBom = "\xEF\xBB\xBF";
  TsvHeader header{path, {}};
  std::string line;
  int64_t line_no = 0;
  // The byte-order mark is valid UTF-8, so it is looked at before the UTF-8 check.
  ECMOE_CHECK(read_tsv_line(in, line, line_no, path), path,
              ": empty file, expected a header line naming the columns");
  const bool bom = line.rfind(kBom, 0) == 0;
  header.columns = split_tabs(bom ? line.substr(kBom.size()) : line);
  ECMOE_CHECK(!bom, path, ":1: the file starts with a UTF-8 byte-order mark (columns found: ",
              header.columns_found(), "); save it as UTF-8 without a BOM");
  return header;
}

int tsv_column(const TsvHeader& header, const std::string& name, const std::string& hint) {
  const auto it = std::find(header.columns.begin(), header.columns.end(), name);
  if (it != header.columns.end()) return int(it - header.columns.begin());
  const bool commas =
      header.columns.size() == 1 && header.columns[0].find(',') != std::string::npos;
  fail(header.path, ":1: no column '", name, "' (columns found: ", header.columns_found(), ")",
       commas ? ": the file looks comma-separated; give a tab-separated file" : "",
       hint.empty() ? "" : "; " + hint);
}

std::string tsv_cell(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

}  // namespace ecmoe::finetune
