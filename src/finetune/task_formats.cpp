#include "finetune/task_formats.h"

#include <charconv>
#include <cstddef>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "data/clean.h"

namespace ecmoe::finetune {

std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& what) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  size_t i = 0, line = 1, record_line = 1;
  bool record_open = false;  // something of this record was read (a blank line has nothing)
  bool field_start = true;   // nothing of the current field was read: a quote opens quoting
  const auto end_record = [&] {
    if (record_open) {
      record.push_back(std::move(field));
      records.push_back(std::move(record));
    }
    record.clear();
    field.clear();
    record_open = false;
    field_start = true;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"' && field_start) {
      record_open = true;
      field_start = false;
      size_t j = i + 1;
      while (true) {
        ECMOE_CHECK(j < text.size(), what, ":", record_line, ": unterminated quoted field");
        if (text[j] == '"') {
          if (j + 1 < text.size() && text[j + 1] == '"') {
            field += '"';
            j += 2;
            continue;
          }
          break;
        }
        if (text[j] == '\n') ++line;
        field += text[j++];
      }
      i = j + 1;
    } else if (c == ',') {
      record.push_back(std::move(field));
      field.clear();
      record_open = true;
      field_start = true;
      ++i;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_record();
      ++i;
      record_line = ++line;
    } else {
      field += c;
      record_open = true;
      field_start = false;
      ++i;
    }
  }
  end_record();
  return records;
}

std::optional<std::string> email_body(std::string_view message) {
  size_t pos = message.find("\n\n");
  size_t skip = 2;
  const size_t crlf = message.find("\r\n\r\n");
  if (crlf != std::string_view::npos && (pos == std::string_view::npos || crlf < pos)) {
    pos = crlf;
    skip = 4;
  }
  if (pos == std::string_view::npos) return std::nullopt;
  return std::string(message.substr(pos + skip));
}

std::optional<SupersenseLine> supersense_line(std::string_view line) {
  const auto gloss = data::wordnet_gloss(line);
  if (!gloss) return std::nullopt;
  // "offset lex_filenum ss_type ..."
  const size_t a = line.find(' ');
  if (a == std::string_view::npos) return std::nullopt;
  const size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  int lex = -1;
  const auto r = std::from_chars(line.data() + a + 1, line.data() + b, lex);
  if (r.ec != std::errc() || r.ptr != line.data() + b || lex < 0 ||
      lex >= int(lexicographer_files().size()))
    return std::nullopt;
  return SupersenseLine{lex, *gloss};
}

const std::vector<std::string>& lexicographer_files() {
  static const std::vector<std::string> names = {
      "adj.all",          "adj.pert",           "adv.all",
      "noun.Tops",        "noun.act",           "noun.animal",
      "noun.artifact",    "noun.attribute",     "noun.body",
      "noun.cognition",   "noun.communication", "noun.event",
      "noun.feeling",     "noun.food",          "noun.group",
      "noun.location",    "noun.motive",        "noun.object",
      "noun.person",      "noun.phenomenon",    "noun.plant",
      "noun.possession",  "noun.process",       "noun.quantity",
      "noun.relation",    "noun.shape",         "noun.state",
      "noun.substance",   "noun.time",          "verb.body",
      "verb.change",      "verb.cognition",     "verb.communication",
      "verb.competition", "verb.consumption",   "verb.contact",
      "verb.creation",    "verb.emotion",       "verb.motion",
      "verb.perception",  "verb.possession",    "verb.social",
      "verb.stative",     "verb.weather",       "adj.ppl"};
  return names;
}

std::string utf8_prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n));
}

}  // namespace ecmoe::finetune
