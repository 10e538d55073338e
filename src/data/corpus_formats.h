// Parsers for the raw files of each pre-training corpus, from fetched bytes to cleaned documents.
// Pure functions of their input, so the tests feed them small hand-written samples.
#pragma once
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

}  // namespace ecmoe::data
