// The split is a pure function of (source, name, seed): same answer in any order, about the
// requested fraction, and never an empty side when there are two documents or more.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/split.h"

using namespace ecmoe::data;

namespace {
std::vector<Document> make_docs(int n, const std::string& source = "src") {
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) docs.push_back({source, "doc" + std::to_string(i), "text"});
  return docs;
}

std::set<std::string> names(const std::vector<Document>& docs) {
  std::set<std::string> out;
  for (const auto& d : docs) out.insert(d.source + "/" + d.name);
  return out;
}
}  // namespace

TEST(Split, DeterministicAndIndependentOfOrder) {
  auto docs = make_docs(2000);
  const auto a = split_documents(docs, {0.03, 7});
  const auto b = split_documents(docs, {0.03, 7});
  EXPECT_EQ(names(a.val), names(b.val));
  std::reverse(docs.begin(), docs.end());
  const auto c = split_documents(docs, {0.03, 7});
  EXPECT_EQ(names(a.val), names(c.val));
  EXPECT_EQ(a.train.size() + a.val.size(), 2000u);
  // Input order is kept within each side.
  EXPECT_EQ(a.train.front().name, "doc0");
}

TEST(Split, FractionSeedAndSourceMatter) {
  const auto docs = make_docs(20000);
  const auto s = split_documents(docs, {0.025, 1});
  EXPECT_NEAR(double(s.val.size()) / 20000.0, 0.025, 0.005);
  const auto other_seed = split_documents(docs, {0.025, 2});
  EXPECT_NE(names(s.val), names(other_seed.val));
  // The same names under another source are drawn independently.
  const auto other_source = split_documents(make_docs(20000, "other"), {0.025, 1});
  std::set<std::string> a, b;
  for (const auto& d : s.val) a.insert(d.name);
  for (const auto& d : other_source.val) b.insert(d.name);
  EXPECT_NE(a, b);
}

TEST(Split, AddingDocumentsNeverMovesExistingOnes) {
  const auto small = split_documents(make_docs(500), {0.05, 3});
  const auto large = split_documents(make_docs(1000), {0.05, 3});
  const auto large_val = names(large.val);
  for (const auto& d : small.val) EXPECT_TRUE(large_val.count(d.source + "/" + d.name));
}

TEST(Split, BothSidesNonEmptyFromTwoDocuments) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto tiny = split_documents(make_docs(2), {0.01, seed});
    EXPECT_EQ(tiny.train.size(), 1u);
    EXPECT_EQ(tiny.val.size(), 1u);
    const auto greedy = split_documents(make_docs(3), {0.99, seed});
    EXPECT_GE(greedy.train.size(), 1u);
  }
  const auto one = split_documents(make_docs(1), {0.5, 1});
  EXPECT_EQ(one.train.size() + one.val.size(), 1u);
  const auto none = split_documents(make_docs(10), {0.0, 1});
  EXPECT_EQ(none.val.size(), 0u);
  const auto all = split_documents(make_docs(10), {1.0, 1});  // text to evaluate on
  EXPECT_EQ(all.val.size(), 10u);
  EXPECT_EQ(all.train.size(), 0u);
}

TEST(Split, RejectsBadFraction) {
  EXPECT_THROW(split_documents(make_docs(3), {1.01, 1}), ecmoe::Error);
  EXPECT_THROW(split_documents(make_docs(3), {-0.1, 1}), ecmoe::Error);
}
