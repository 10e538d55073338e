// Each parser keeps the corpus' natural unit as a line: a paragraph, a sentence, a gloss, a verse.
#include "data/corpus_formats.h"

#include <cstdio>

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

}  // namespace ecmoe::data
