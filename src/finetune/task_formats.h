// Parsers for the raw files behind the built-in tasks, kept apart from fetching so tests can feed
// them text they write.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ecmoe::finetune {

// RFC 4180 CSV: comma-separated fields, optionally double-quoted; a quoted field may hold commas,
// newlines and "" for a quote. A UTF-8 byte-order mark is dropped; blank lines are skipped.
// `what` names the file in errors (an unterminated quote).
std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& what);

// The body of an RFC 822 message: everything after the first empty line (headers dropped), or
// nullopt when there is no header/body boundary.
std::optional<std::string> email_body(std::string_view message);

// One WordNet data.* line: its lexicographer file number (field 2) and gloss, or nullopt for the
// license header and lines without a gloss.
struct SupersenseLine {
  int lex_file = 0;
  std::string gloss;
};
std::optional<SupersenseLine> supersense_line(std::string_view line);

// WordNet's 45 lexicographer files ("adj.all", ..., "verb.weather"), index = file number.
const std::vector<std::string>& lexicographer_files();

// At most `max_bytes` of text, cut at a UTF-8 character boundary.
std::string utf8_prefix(std::string_view text, size_t max_bytes);

}  // namespace ecmoe::finetune
