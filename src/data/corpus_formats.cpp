// Each parser keeps the corpus' natural unit as a line: a paragraph, a sentence, a gloss, a verse.
#include "data/corpus_formats.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "core/error.h"
#include "data/clean.h"
#include "data/lines.h"

namespace ecmoe::data {

namespace {

std::string numbered(std::string_view prefix, int index) {
  char digits[16];
  std::snprintf(digits, sizeof(digits), "%04d", index);
  return std::string(prefix) + "/" + digits;
}

// "Song of Solomon 2" -> "Song of Solomon"
std::string_view book_of_heading(std::string_view heading) {
  const std::size_t space = heading.rfind(' ');
  return space == std::string_view::npos ? heading : heading.substr(0, space);
}

}  // namespace

std::string sotu_text(std::string_view raw) {
  return clean_text(strip_transcript_notes(repair_utf8(raw)));
}

std::string moby_dick_text(std::string_view raw) { return clean_text(repair_utf8(raw)); }

std::string brown_text(std::string_view raw) {
  const std::string text = repair_utf8(raw);
  std::string stripped;
  stripped.reserve(text.size());
  for_each_line(text, [&](std::string_view line) {
    stripped += strip_brown_tags(line);
    stripped += '\n';
  });
  return clean_text(stripped);
}

std::vector<Document> wordnet_documents(std::string_view raw, std::string_view part,
                                        int glosses_per_document) {
  ECMOE_CHECK(glosses_per_document > 0, "glosses per document must be positive");
  const std::string text = repair_utf8(raw);
  std::vector<Document> docs;
  std::string group;
  int in_group = 0;
  const auto close_group = [&] {
    const std::string cleaned = clean_text(group);
    if (!cleaned.empty()) docs.push_back({"wordnet", numbered(part, int(docs.size())), cleaned});
    group.clear();
    in_group = 0;
  };
  for_each_line(text, [&](std::string_view line) {
    const auto gloss = wordnet_gloss(line);
    if (!gloss) return;
    group += *gloss;
    group += '\n';
    if (++in_group == glosses_per_document) close_group();
  });
  if (in_group > 0) close_group();
  return docs;
}

std::vector<Document> kjv_documents(std::string_view raw) {
  const std::string text = repair_utf8(raw);
  std::vector<Document> docs;
  std::string book, verses;
  const auto close_book = [&] {
    const std::string cleaned = clean_text(verses);
    if (!book.empty() && !cleaned.empty()) docs.push_back({"kjv", book, cleaned});
    verses.clear();
  };
  bool previous_empty = true;
  for_each_line(text, [&](std::string_view line) {
    const bool empty = line.find_first_not_of(' ') == std::string_view::npos;
    if (empty) {
      previous_empty = true;
      return;
    }
    if (line[0] != ' ' && previous_empty) {  // chapter heading
      const std::string_view heading_book = book_of_heading(line);
      if (heading_book != book) {
        close_book();
        book = std::string(heading_book);
      }
    } else if (line[0] == ' ') {  // "  12 verse text": drop the number
      std::size_t i = line.find_first_not_of(' ');
      while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
      if (!verses.empty()) verses += '\n';
      verses.append(line.substr(i));
    } else {  // continuation of a wrapped verse
      verses += ' ';
      verses.append(line);
    }
    previous_empty = false;
  });
  close_book();
  return docs;
}

// ---- The further sources of "english-large" ----

namespace {

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (static_cast<unsigned char>(c) & 0x80);  // any byte of a non-ASCII letter
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// dictd's base64 numbers: digits A-Z a-z 0-9 + / (values 0-63), most significant first.
std::optional<uint64_t> dictd_number(std::string_view digits) {
  if (digits.empty() || digits.size() > 10) return std::nullopt;
  uint64_t n = 0;
  for (const char c : digits) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+' || c == '/') {
      v = c == '+' ? 62 : 63;
    } else {
      return std::nullopt;
    }
    n = n * 64 + uint64_t(v);
  }
  return n;
}

// Mostly letters: at least half of the visible characters. A character counts once whatever its
// length; letters are ASCII ones and two-byte ones from U+00C0 on (accented Latin, Greek,
// Cyrillic), not U+0080-U+00BF (·, «, ©, ...) nor longer ones (box drawing, dashes, symbols).
bool mostly_letters(std::string_view line) {
  std::size_t visible = 0, letters = 0;
  for (const char c : line) {
    const auto b = static_cast<unsigned char>(c);
    if (c == ' ' || c == '\t' || (b & 0xC0) == 0x80) continue;  // spaces, continuation bytes
    ++visible;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (b >= 0xC3 && b <= 0xDF)) ++letters;
  }
  return 2 * letters >= visible;
}

// A line of a dictionary entry worth keeping: not a pronunciation ("/ad·hok'@r·ee/, n.", which
// the Jargon File puts on a line of its own) and mostly letters (not ASCII art or a table).
bool is_dictionary_text(std::string_view line) {
  const std::size_t start = line.find_first_not_of(" \t");
  return start != std::string_view::npos && line[start] != '/' && mostly_letters(line);
}

// "CHAPTER XII", "Chapter 12.", "VOLUME II": the word (in capitals or capitalised) and a number.
bool is_heading(std::string_view line, std::string_view word) {
  const std::size_t start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) return false;
  line = line.substr(start);
  while (!line.empty() && (line.back() == ' ' || line.back() == '.')) line.remove_suffix(1);
  if (line.size() <= word.size() + 1 || line[word.size()] != ' ') return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    const char upper = word[i];
    const char lower = char(upper - 'A' + 'a');
    if (line[i] != upper && (i == 0 || line[i] != lower)) return false;
  }
  const std::string_view number = line.substr(word.size() + 1);
  const bool roman = number.find_first_not_of("IVXLC") == std::string_view::npos;
  const bool arabic = number.find_first_not_of("0123456789") == std::string_view::npos;
  return roman || arabic;
}

// The "text" values below `node` as lines "Field: value" appended to `text`, where the field
// is named by the keys on the way: {"Background": {"text": ...}}, {"Area": {"total": {"text":
// ...}}}.
void add_factbook_fields(const nlohmann::ordered_json& node, const std::string& field,
                         std::string& text) {
  if (!node.is_object()) return;
  for (const auto& [key, value] : node.items()) {
    if (key != "text" || !value.is_string()) {
      add_factbook_fields(value, field.empty() ? key : field + ", " + key, text);
      continue;
    }
    const std::string line = normalize_whitespace(repair_utf8(value.get<std::string>()));
    const std::size_t words =
        line.empty() ? 0 : 1 + std::size_t(std::count(line.begin(), line.end(), ' '));
    if (words >= kFactbookMinWords && !field.empty())
      text += (text.empty() ? "" : "\n") + field + ": " + line;
  }
}

}  // namespace

std::string strip_italic_underscores(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '_') {
      const bool word_before = i > 0 && is_word_char(line[i - 1]);
      const bool word_after = i + 1 < line.size() && is_word_char(line[i + 1]);
      if (!word_before || !word_after) continue;
    }
    out += line[i];
  }
  return out;
}

std::string paragraphs(std::string_view text, bool (*keep_line)(std::string_view)) {
  const std::string valid = repair_utf8(text);
  std::string out, paragraph;
  const auto close = [&] {
    const std::string line = normalize_whitespace(strip_italic_underscores(paragraph));
    if (!line.empty()) out += (out.empty() ? "" : "\n") + line;
    paragraph.clear();
  };
  for_each_line(valid, [&](std::string_view line) {
    if (is_blank(line)) return close();
    if (keep_line && !keep_line(line)) return;
    if (!paragraph.empty()) paragraph += ' ';
    paragraph.append(line);
  });
  close();
  return out;
}

std::vector<DictEntry> dictd_entries(std::string_view index, std::string_view dict) {
  std::vector<DictEntry> entries;
  std::set<std::pair<uint64_t, uint64_t>> seen;
  int line_number = 0;
  for_each_line(index, [&](std::string_view line) {
    ++line_number;
    if (line.empty()) return;
    const std::size_t tab1 = line.find('\t');
    const std::size_t tab2 = tab1 == std::string_view::npos ? tab1 : line.find('\t', tab1 + 1);
    ECMOE_CHECK(tab2 != std::string_view::npos, "dictd index line ", line_number,
                " has not three tab-separated fields");
    const std::string_view headword = line.substr(0, tab1);
    // A fourth field (the original spelling, in some databases) follows another tab.
    std::string_view length_field = line.substr(tab2 + 1);
    length_field = length_field.substr(0, length_field.find('\t'));
    const auto offset = dictd_number(line.substr(tab1 + 1, tab2 - tab1 - 1));
    const auto length = dictd_number(length_field);
    ECMOE_CHECK(offset && length, "dictd index line ", line_number, " has a malformed offset");
    ECMOE_CHECK(*offset + *length <= dict.size(), "dictd index line ", line_number,
                " points outside the dictionary text");
    if (headword.substr(0, 10) == "00database" || headword.substr(0, 11) == "00-database") return;
    if (!seen.insert({*offset, *length}).second) return;
    entries.push_back({std::string(headword), std::string(dict.substr(*offset, *length))});
  });
  return entries;
}

std::string dictionary_entry_text(std::string_view entry) {
  std::string unbraced;
  unbraced.reserve(entry.size());
  for (const char c : entry)
    if (c != '{' && c != '}') unbraced += c;
  return paragraphs(unbraced, is_dictionary_text);
}

std::vector<Document> dictionary_documents(const std::vector<DictEntry>& entries,
                                           std::string_view source, int entries_per_document) {
  ECMOE_CHECK(entries_per_document > 0, "entries per document must be positive");
  std::vector<Document> docs;
  std::string text;
  int group = 0, in_group = 0;
  const auto close_group = [&] {
    if (!text.empty()) docs.push_back({std::string(source), numbered(source, group), text});
    text.clear();
    in_group = 0;
    ++group;
  };
  for (const auto& entry : entries) {
    const std::string cleaned = dictionary_entry_text(entry.text);
    if (!cleaned.empty()) text += (text.empty() ? "" : "\n") + cleaned;
    if (++in_group == entries_per_document) close_group();
  }
  if (in_group > 0) close_group();
  return docs;
}

std::vector<Document> novel_chapters(const std::vector<std::string>& lines, std::string_view source,
                                     std::string_view novel) {
  std::vector<Document> docs;
  std::string chapter;
  int number = 0;  // 0: the title page, before the first chapter
  const auto close = [&] {
    std::string text = paragraphs(chapter);
    if (number > 0 && !text.empty())
      docs.push_back({std::string(source), numbered(novel, number), std::move(text)});
    chapter.clear();
  };
  for (const auto& line : lines) {
    if (is_heading(line, "CHAPTER")) {
      close();
      ++number;
    } else if (is_heading(line, "VOLUME")) {
      chapter += '\n';  // ends a paragraph, like the blank line it stands in for
    } else {
      chapter += line + '\n';
    }
  }
  close();
  return docs;
}

std::string factbook_text(std::string_view json, std::string_view what) {
  nlohmann::ordered_json profile;
  try {
    profile = nlohmann::ordered_json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail(what, " is not valid JSON: ", e.what());
  }
  std::string text;
  if (profile.is_object())
    for (const auto& [section, fields] : profile.items()) add_factbook_fields(fields, "", text);
  return text;
}

}  // namespace ecmoe::data
