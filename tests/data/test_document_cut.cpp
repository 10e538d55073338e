// cut_documents: how a user's file becomes documents. Joined back, the documents are the cleaned
// file; each but the last reaches the size; cuts fall at paragraph breaks when the text has them.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/clean.h"
#include "data/document_cut.h"
#include "test_util.h"

using ecmoe::data::clean_text;
using ecmoe::data::cut_documents;

namespace {

std::string joined(const std::vector<std::string>& docs) {
  std::string text;
  for (const auto& d : docs) text += (text.empty() ? "" : "\n") + d;
  return text;
}

// Paragraphs of 3-5 sentences separated by blank lines (some with stray spaces and CRs).
std::string paragraphs(int count) {
  std::string text;
  for (int p = 0; p < count; ++p)
    text += ecmoe::data::test::sample_text(uint64_t(p), 3 + p % 3) + (p % 4 ? "\n" : "  \r\n\n");
  return text;
}

}  // namespace

TEST(DocumentCut, ZeroBytesIsTheWholeCleanedFile) {
  const std::string raw = paragraphs(20);
  const auto docs = cut_documents(raw, 0);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0], clean_text(raw));
  EXPECT_TRUE(cut_documents(" \n\t\n", 0).empty());
  EXPECT_TRUE(cut_documents(" \n\t\n", 100).empty());
}

TEST(DocumentCut, CutsAtParagraphBreaksAfterTheSize) {
  const std::string raw = paragraphs(200);
  const std::size_t size = 1000;
  const auto docs = cut_documents(raw, int64_t(size));
  EXPECT_EQ(joined(docs), clean_text(raw));
  ASSERT_GT(docs.size(), 10u);
  // Each document ends where a paragraph of the raw text ends: its last line is followed by a
  // blank line in the raw text.
  for (std::size_t i = 0; i + 1 < docs.size(); ++i) {
    EXPECT_GE(docs[i].size(), size) << i;
    EXPECT_LT(docs[i].size(), size + 1000) << i;  // at most one more paragraph
    const std::string last_line = docs[i].substr(docs[i].rfind('\n') + 1);
    const std::size_t at = raw.find(last_line + "\n");
    ASSERT_NE(at, std::string::npos);
    const std::string after = raw.substr(at + last_line.size() + 1, 4);
    EXPECT_TRUE(after[0] == '\n' || after[0] == ' ') << i << ": '" << after << "'";
  }
}

TEST(DocumentCut, TextWithoutBlankLinesIsCutAtLineBreaksAfterTwiceTheSize) {
  const std::string raw = ecmoe::data::test::sample_text(3, 400);  // no blank line
  const auto docs = cut_documents(raw, 500);
  EXPECT_EQ(joined(docs), clean_text(raw));
  ASSERT_GT(docs.size(), 10u);
  for (std::size_t i = 0; i + 1 < docs.size(); ++i) {
    EXPECT_GE(docs[i].size(), 1000u) << i;
    EXPECT_LT(docs[i].size(), 1200u) << i;  // one line more at most
  }
  // A file shorter than the size is one document.
  EXPECT_EQ(cut_documents("one line\n\nanother\n", 500).size(), 1u);
}
