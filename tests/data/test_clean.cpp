// Cleaning rules and corpus parsers on small hand-written samples of each raw format.
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "core/error.h"
#include "data/clean.h"
#include "data/corpus.h"
#include "data/corpus_formats.h"

using namespace ecmoe::data;

TEST(Clean, NormalizeWhitespaceCollapsesTrimsAndDropsInvisibles) {
  EXPECT_EQ(normalize_whitespace("  a \t b\r\n  c  "), "a b c");
  EXPECT_EQ(normalize_whitespace("x\xC2\xA0y"), "x y");           // no-break space
  EXPECT_EQ(normalize_whitespace("x\xE2\x80\x83 y"), "x y");      // em space + space
  EXPECT_EQ(normalize_whitespace("\xEF\xBB\xBFhello"), "hello");  // byte order mark
  EXPECT_EQ(normalize_whitespace("a\001b\177c"), "abc");          // control characters
  EXPECT_EQ(normalize_whitespace("zero\xE2\x80\x8Bwidth"), "zerowidth");
  EXPECT_EQ(normalize_whitespace("caf\xC3\xA9 \xE2\x80\x94 ok"), "caf\xC3\xA9 \xE2\x80\x94 ok");
  EXPECT_EQ(normalize_whitespace(" \t "), "");
}

TEST(Clean, CleanTextKeepsNonEmptyLines) {
  EXPECT_EQ(clean_text("\n\n  First   line \r\n\n\t\nsecond\n"), "First line\nsecond");
  EXPECT_EQ(clean_text(" \n\t\n"), "");
  EXPECT_EQ(clean_text(""), "");
}

TEST(Clean, Utf8ValidationAndRepair) {
  EXPECT_FALSE(find_invalid_utf8("plain \xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_EQ(find_invalid_utf8("ab\377cd"), 2u);
  EXPECT_EQ(find_invalid_utf8("ab\xC3"), 2u);          // cut short
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);        // overlong '/'
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);   // surrogate
  EXPECT_EQ(repair_utf8("a\377b"), "a\357\277\275b");  // U+FFFD
}

TEST(Clean, BrownTagsAreStrippedAndPunctuationRejoined) {
  EXPECT_EQ(strip_brown_tags("\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd "
                             "an/at investigation/nn of/in Atlanta's/np$ election/nn ./."),
            "The Fulton County Grand Jury said an investigation of Atlanta's election.");
  EXPECT_EQ(strip_brown_tags("produced/vbd ``/`` no/at evidence/nn ''/'' that/cs ,/, (/( a/at )/)"),
            "produced \"no evidence\" that, (a)");
  // The word is what precedes the last '/': fractions and "and/or" keep theirs.
  EXPECT_EQ(strip_brown_tags("1/2/cd and/or/cc //in mg/l/nn"), "1/2 and/or / mg/l");
  EXPECT_EQ(strip_brown_tags("   "), "");
  EXPECT_EQ(brown_text("\n\n\tHe/pps ran/vbd ./.\n\n\n\tShe/pps sat/vbd ;/. done/vbn\n"),
            "He ran.\nShe sat; done");
}

TEST(Clean, WordnetGlossExtraction) {
  EXPECT_EQ(wordnet_gloss("00001740 02 r 02 a_cappella 0 a_capella 0 002 \\ 02260096 a 0202 | "
                          "without musical accompaniment; \"they performed a cappella\"  "),
            "without musical accompaniment; \"they performed a cappella\"");
  EXPECT_FALSE(wordnet_gloss("  1 This software and database is being provided to you | x"));
  EXPECT_FALSE(wordnet_gloss("00001740 02 r 02 no_gloss 0 000"));
  EXPECT_FALSE(wordnet_gloss("00001740 02 r 02 empty 0 000 |   "));
}

TEST(Clean, WordnetDocumentsGroupGlosses) {
  std::string raw = "  1 license header line  \n  2 more license\n";
  for (int i = 0; i < 5; ++i)
    raw += "0000" + std::to_string(i) + " 02 n 01 w 0 000 | gloss " + std::to_string(i) + "  \n";
  const auto docs = wordnet_documents(raw, "noun", 2);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].source, "wordnet");
  EXPECT_EQ(docs[0].name, "noun/0000");
  EXPECT_EQ(docs[0].text, "gloss 0\ngloss 1");
  EXPECT_EQ(docs[2].name, "noun/0002");
  EXPECT_EQ(docs[2].text, "gloss 4");
}

TEST(Clean, TranscriptNotesAreRemovedButInsertionsStay) {
  EXPECT_EQ(clean_text(strip_transcript_notes("Thank you. [Applause] We will [laughter] win.")),
            "Thank you. We will win.");
  EXPECT_EQ(
      clean_text(strip_transcript_notes("End of page [p.7] next [p. 12] and [missing text].")),
      "End of page next and .");
  EXPECT_EQ(strip_transcript_notes("to [the States] and [sic] a [ broken"),
            "to [the States] and [sic] a [ broken");
  EXPECT_EQ(sotu_text("Mr. Speaker:  Hello [APPLAUSE].\n\nBye."), "Mr. Speaker: Hello .\nBye.");
}

TEST(Clean, KjvBooksVersesAndWrappedLines) {
  const std::string raw =
      "\nGenesis 1\n\n"
      "  1 In the beginning God created the heaven and the earth.\n"
      "  2 And the earth was without form, and\n"
      "void.\n"
      "\nGenesis 2\n\n"
      "  1 Thus the heavens were finished.\n"
      "\n1 Kings 1\n\n"
      "  1 Now king David was old\n"
      "and stricken in years.\n"
      "\nSong of Solomon 1\n\n"
      "  1 The song of songs.\n";
  const auto docs = kjv_documents(raw);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].name, "Genesis");
  EXPECT_EQ(docs[0].text,
            "In the beginning God created the heaven and the earth.\n"
            "And the earth was without form, and void.\n"
            "Thus the heavens were finished.");
  EXPECT_EQ(docs[1].name, "1 Kings");
  EXPECT_EQ(docs[1].text, "Now king David was old and stricken in years.");
  EXPECT_EQ(docs[2].name, "Song of Solomon");
  EXPECT_EQ(docs[2].source, "kjv");
}

TEST(Clean, CutLongLinePrefersSentenceEndsThenSpaces) {
  const std::string line = "One two three. Four five six. Seven eight nine ten eleven.";
  for (std::size_t max : {8u, 16u, 20u, 30u, 100u}) {
    std::string rejoined;
    for (const auto piece : cut_long_line(line, max)) {
      EXPECT_LE(piece.size(), max) << "max " << max;
      EXPECT_FALSE(piece.empty());
      EXPECT_NE(piece.front(), ' ');
      EXPECT_NE(piece.back(), ' ');
      if (!rejoined.empty()) rejoined += ' ';
      rejoined += piece;
    }
    EXPECT_EQ(rejoined, line) << "max " << max;
  }
  const auto pieces = cut_long_line(line, 30);
  EXPECT_EQ(pieces[0], "One two three. Four five six.");
  // No space at all: a cut at a character boundary, never inside a multi-byte character.
  std::string no_spaces;
  for (int i = 0; i < 10; ++i) no_spaces += "\xC3\xA9";  // 2-byte characters
  for (const auto piece : cut_long_line(no_spaces, 5)) EXPECT_EQ(piece.size() % 2, 0u);
}

TEST(Corpus, UnknownCorpusNameIsAnError) {
  EXPECT_EQ(corpus_sources("english").size(), 5u);
  EXPECT_EQ(corpus_sources("brown").size(), 1u);
  try {
    corpus_sources("klingon");
    FAIL() << "expected an error";
  } catch (const ecmoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown corpus 'klingon'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("english"), std::string::npos);
  }
}
