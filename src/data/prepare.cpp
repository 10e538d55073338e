// Orchestration of `ecmoe prepare`: decide what can be reused, then run only the steps needed.
// The manifest is removed before anything is rebuilt and written last, so a run cut short
// leaves a folder that TokenDataset refuses instead of one that lies.
#include "data/prepare.h"

#include <cstdio>
#include <filesystem>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "data/checksum.h"
#include "data/corpus.h"
#include "data/input_files.h"
#include "data/shard_writer.h"
#include "data/split.h"
#include "data/tokenizer.h"
#include "data/tokenizer_trainer.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

constexpr const char* kTokenizerFile = "tokenizer.model";
constexpr const char* kSplitNames[2] = {"train", "val"};

class Logger {
 public:
  explicit Logger(const std::function<void(const std::string&)>& sink) : sink_(sink) {}
  template <typename... Parts>
  void operator()(const Parts&... parts) const {
    if (sink_) sink_(detail::concat(parts...));
  }

 private:
  const std::function<void(const std::string&)>& sink_;
};

std::string seconds_since(double t0) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", now_seconds() - t0);
  return text;
}

std::string mb(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MB", double(bytes) / 1e6);
  return text;
}

// The previous manifest if it can be read; a broken one is only worth a note, since it is about to
// be replaced.
std::optional<Manifest> previous_manifest(const std::string& dir, const Logger& log) {
  if (!fs::exists(dir + "/" + kManifestFile)) return std::nullopt;
  try {
    return read_manifest(dir);
  } catch (const Error& e) {
    log("ignoring the old manifest: ", e.what());
    return std::nullopt;
  }
}

}  // namespace

namespace {

PrepareResult prepare_unchecked(const PrepareConfig& config) {
  const Logger log(config.log);
  const double t_start = now_seconds();
  ECMOE_CHECK(config.vocab_size >= kMinVocabSize, "vocab size ", config.vocab_size,
              " is too small: at least ", kMinVocabSize,
              " needed (7 special pieces, 256 byte pieces, some merges)");
  ECMOE_CHECK(config.val_fraction >= 0.0 && config.val_fraction < 1.0,
              "validation fraction must be in [0, 1), got ", config.val_fraction);
  ECMOE_CHECK(config.tokenizer_sample_bytes > 0, "tokenizer sample size must be positive");

  // What the folder is made from. For a named corpus the pinned sources identify the text without
  // fetching anything; user files are read now, since their content is what identifies them.
  const bool from_files = !config.inputs.empty();
  Manifest manifest;
  std::vector<Document> docs;
  std::vector<CorpusSource> sources;
  if (from_files) {
    InputFiles input = load_input_files(config.inputs);
    manifest.corpus = "input";
    manifest.source_id = "files " + checksum_to_string(input.fingerprint);
    sources = {{"input", std::to_string(input.files) + " user files"}};
    docs = std::move(input.documents);
    ECMOE_CHECK(!docs.empty(), "the input files hold no text after cleaning");
  } else {
    sources = corpus_sources(config.corpus);
    manifest.corpus = config.corpus;
    for (const auto& s : sources)
      manifest.source_id += (manifest.source_id.empty() ? "" : "; ") + s.name + ": " + s.origin;
  }
  manifest.settings = {config.vocab_size, config.val_fraction, config.seed,
                       config.tokenizer_sample_bytes, kCleaningVersion};

  const std::string out = config.out_dir.empty() ? "data/" + manifest.corpus : config.out_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  ECMOE_CHECK(!ec, "cannot create output folder ", out, ": ", ec.message());

  // Reuse: everything if every file is intact; else the intact tokenizer (the slow part) and, with
  // it, any intact shard.
  const std::optional<Manifest> old = config.force ? std::nullopt : previous_manifest(out, log);
  const bool same_request = old && old->corpus == manifest.corpus &&
                            old->source_id == manifest.source_id &&
                            old->settings == manifest.settings;
  if (old && !same_request)
    log("settings or sources changed since ", out, " was prepared; rebuilding");
  bool tokenizer_ok = false;
  std::set<std::string> intact_shards;
  if (same_request) {
    const auto problem = check_file(out, old->tokenizer);
    tokenizer_ok = !problem;
    if (problem) log(*problem, "; rebuilding");
    for (const char* split : kSplitNames) {
      const auto it = old->splits.find(split);
      const auto shard_problem =
          it == old->splits.end()
              ? std::optional<std::string>(std::string("no ") + split + " split")
              : check_file(out, it->second);
      if (shard_problem) {
        log(*shard_problem, "; rebuilding");
      } else {
        intact_shards.insert(split);
      }
    }
    const bool all_ok = tokenizer_ok && intact_shards.size() == std::size(kSplitNames);
    if (all_ok) {
      log("reusing ", out, " (manifest and checksums match; --force rebuilds)");
      return {out, *old, true};
    }
  }
  // From here on the old manifest would describe files that are being replaced.
  fs::remove(out + "/" + kManifestFile, ec);

  if (!from_files) {
    const double t0 = now_seconds();
    docs = load_corpus(config.corpus, {config.cache_dir, config.log});
    int64_t bytes = 0;
    for (const auto& d : docs) bytes += int64_t(d.text.size());
    log("loaded ", docs.size(), " documents (", mb(bytes), " cleaned) in ", seconds_since(t0));
  }

  SplitDocuments split = split_documents(std::move(docs), {config.val_fraction, config.seed});
  log("split: ", split.train.size(), " train / ", split.val.size(), " validation documents");
  ECMOE_CHECK(!split.train.empty(), "no training documents");

  const std::string tokenizer_path = out + "/" + kTokenizerFile;
  if (tokenizer_ok) {
    log("reusing ", tokenizer_path);
  } else {
    const double t0 = now_seconds();
    TokenizerTrainConfig tc;
    tc.vocab_size = config.vocab_size;
    tc.sample_bytes = config.tokenizer_sample_bytes;
    tc.seed = config.seed;
    const TrainedTokenizer trained = train_tokenizer(split.train, tc);
    write_file_atomically(tokenizer_path, trained.model);
    log("trained a ", config.vocab_size, "-piece BPE tokenizer on ", trained.sentences,
        " sentences (", mb(trained.bytes), ") in ", seconds_since(t0));
  }
  manifest.tokenizer = {kTokenizerFile, int64_t(fs::file_size(tokenizer_path)),
                        checksum_file(tokenizer_path)};
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_path);
  manifest.vocab_size = tokenizer.vocab_size();
  manifest.dtype = dtype_for_vocab(manifest.vocab_size);

  for (const auto& s : sources) manifest.corpora.push_back({s.name, s.origin});
  for (const char* name : kSplitNames) {
    const bool is_train = std::string(name) == "train";
    if (tokenizer_ok && intact_shards.count(name)) {
      log("reusing ", out, "/", old->splits.at(name).file);
      manifest.splits[name] = old->splits.at(name);
      for (auto& c : manifest.corpora)
        for (const auto& o : old->corpora)
          if (o.name == c.name) {
            (is_train ? c.train_documents : c.val_documents) =
                is_train ? o.train_documents : o.val_documents;
            (is_train ? c.train_tokens : c.val_tokens) = is_train ? o.train_tokens : o.val_tokens;
          }
      continue;
    }
    const double t0 = now_seconds();
    const TokenStream stream = encode_documents(tokenizer, is_train ? split.train : split.val);
    manifest.splits[name] = write_shard(out, std::string(name) + ".bin", stream, manifest.dtype);
    for (auto& c : manifest.corpora) {
      const auto docs_it = stream.documents_by_source.find(c.name);
      const auto tokens_it = stream.tokens_by_source.find(c.name);
      const int64_t n_docs = docs_it == stream.documents_by_source.end() ? 0 : docs_it->second;
      const int64_t n_tokens = tokens_it == stream.tokens_by_source.end() ? 0 : tokens_it->second;
      (is_train ? c.train_documents : c.val_documents) = n_docs;
      (is_train ? c.train_tokens : c.val_tokens) = n_tokens;
    }
    log("wrote ", out, "/", name, ".bin: ", stream.tokens.size(), " tokens, ", stream.documents,
        " documents (", seconds_since(t0), ")");
  }
  write_manifest(out, manifest);
  log("prepared ", out, " in ", seconds_since(t_start));
  return {out, manifest, false};
}

}  // namespace

PrepareResult prepare(const PrepareConfig& config) {
  try {
    return prepare_unchecked(config);
  } catch (const fs::filesystem_error& e) {
    // Permissions, a full disk, a vanished file: the user's to fix, so one line, not a crash.
    fail(e.what());
  }
}

}  // namespace ecmoe::data
