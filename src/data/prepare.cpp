// Orchestration of `ecmoe prepare`: decide what can be reused, then run only the steps needed.
// Anything rebuilt is built in a staging folder beside the output folder (intact files linked in)
// and swapped in whole (data/prepare_swap.h), so a run cut short by an error or a kill leaves the
// old folder as it was.
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
#include "data/checksum.h"
#include "data/corpus.h"
#include "data/input_files.h"
#include "data/prepare_swap.h"
#include "data/shard_writer.h"
#include "data/split.h"
#include "data/tokenizer.h"
#include "data/tokenizer_trainer.h"
#include "io/atomic_file.h"
#include "io/output_dir.h"

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

// What differs between the request and the folder's record, e.g. "vocab size 8000 (was 4000)".
std::string differences(const Manifest& was, const Manifest& now) {
  std::vector<std::string> parts;
  const auto add = [&](bool differ, const std::string& what, const auto& a, const auto& b) {
    if (!differ) return;
    std::ostringstream s;
    s << what << " " << a << " (was " << b << ")";
    parts.push_back(s.str());
  };
  add(was.corpus != now.corpus, "corpus", now.corpus, was.corpus);
  add(was.corpus == now.corpus && was.source_id != now.source_id, "source", now.source_id,
      was.source_id);
  const PrepareSettings &a = now.settings, &b = was.settings;
  add(a.vocab_size != b.vocab_size, "vocab size", a.vocab_size, b.vocab_size);
  add(a.val_fraction != b.val_fraction, "validation fraction", a.val_fraction, b.val_fraction);
  add(a.seed != b.seed, "seed", a.seed, b.seed);
  add(a.tokenizer_sample_bytes != b.tokenizer_sample_bytes && a.tokenizer.empty() &&
          b.tokenizer.empty(),
      "tokenizer sample bytes", a.tokenizer_sample_bytes, b.tokenizer_sample_bytes);
  add(a.cleaning_version != b.cleaning_version, "cleaning version", a.cleaning_version,
      b.cleaning_version);
  add(a.document_bytes != b.document_bytes, "document bytes", a.document_bytes, b.document_bytes);
  const auto named = [](const std::string& sum) { return sum.empty() ? "trained" : sum; };
  add(a.tokenizer != b.tokenizer, "tokenizer", named(a.tokenizer), named(b.tokenizer));
  std::string text;
  for (const auto& p : parts) text += (text.empty() ? "" : ", ") + p;
  return text;
}

// SentencePiece's "Vocabulary size too high (8000). Please set it to a value <= 6018." in terms of
// the option the user can change.
TrainedTokenizer train_tokenizer_for_prepare(const std::vector<Document>& docs,
                                             const TokenizerTrainConfig& config) {
  try {
    return train_tokenizer(docs, config);
  } catch (const Error& e) {
    const std::string message = e.what();
    const std::size_t at = message.find("<= ");
    if (message.find("Vocabulary size too high") == std::string::npos || at == std::string::npos)
      throw;
    std::size_t end = at + 3;
    while (end < message.size() && message[end] >= '0' && message[end] <= '9') ++end;
    fail("the text is too small for a ", config.vocab_size, "-piece vocabulary: pass --vocab-size ",
         message.substr(at + 3, end - at - 3), " or less");
  }
}

// Per input file: documents on each side, bytes, tokens (when the shards were encoded now).
struct FileTally {
  int64_t train_documents = 0, val_documents = 0, tokens = 0;
};

void log_file_summary(const InputFiles& input, const std::vector<FileTally>& tally,
                      bool tokens_known, const Logger& log) {
  constexpr std::size_t kShown = 20;
  for (std::size_t i = 0; i < input.files.size() && i < kShown; ++i) {
    const InputFileSummary& f = input.files[i];
    const FileTally& t = tally[i];
    std::ostringstream line;
    line << "  " << f.name << ": " << mb(f.bytes) << ", " << f.documents << " document"
         << (f.documents == 1 ? "" : "s") << " (" << t.train_documents << " train, "
         << t.val_documents << " val)";
    if (tokens_known) line << ", " << t.tokens << " tokens";
    log(line.str());
  }
  if (input.files.size() > kShown) log("  ... and ", input.files.size() - kShown, " more files");
}

}  // namespace

namespace {

PrepareResult prepare_unchecked(const PrepareConfig& config) {
  const Logger log(config.log);
  const double t_start = now_seconds();
  const bool given_tokenizer = !config.tokenizer.empty();
  ECMOE_CHECK(given_tokenizer || config.vocab_size >= kMinVocabSize, "vocab size ",
              config.vocab_size, " is too small: at least ", kMinVocabSize,
              " needed (7 special pieces, 256 byte pieces, some merges)");
  ECMOE_CHECK(config.val_fraction >= 0.0 && config.val_fraction <= 1.0,
              "validation fraction must be in [0, 1], got ", config.val_fraction);
  ECMOE_CHECK(given_tokenizer || config.val_fraction < 1.0,
              "validation fraction 1 leaves no text to train a tokenizer on: pass --tokenizer to "
              "encode with an existing one, or a fraction below 1");
  ECMOE_CHECK(given_tokenizer || config.tokenizer_sample_bytes > 0,
              "tokenizer sample size must be positive");
  // An existing tokenizer: loaded now (so a wrong file fails before anything is read), and its
  // checksum is part of the settings, so a folder made with another one is not reused.
  std::string given_checksum;
  int given_vocab = 0;
  if (given_tokenizer) {
    std::error_code exists_ec;
    ECMOE_CHECK(fs::exists(config.tokenizer, exists_ec), "tokenizer ", config.tokenizer,
                " does not exist");
    given_vocab = Tokenizer::load(config.tokenizer).vocab_size();
    given_checksum = checksum_to_string(checksum_file(config.tokenizer));
  }

  // What the folder is made from. For a named corpus the pinned sources identify the text without
  // fetching anything; user files are read now, since their content is what identifies them.
  const bool from_files = !config.inputs.empty();
  Manifest manifest;
  std::vector<Document> docs;
  std::vector<CorpusSource> sources;
  InputFiles input;
  if (from_files) {
    input = load_input_files(config.inputs, {config.include, config.document_bytes});
    if (!input.skipped.empty()) log(skipped_files_note(input));
    manifest.corpus = "input";
    manifest.source_id = "files " + checksum_to_string(input.fingerprint);
    sources = {{"input", std::to_string(input.files.size()) + " user files"}};
    docs = std::move(input.documents);
    ECMOE_CHECK(!docs.empty(), "the input files hold no text after cleaning");
  } else {
    sources = corpus_sources(config.corpus);
    manifest.corpus = config.corpus;
    for (const auto& s : sources)
      manifest.source_id += (manifest.source_id.empty() ? "" : "; ") + s.name + ": " + s.origin;
  }
  manifest.settings = {given_tokenizer ? given_vocab : config.vocab_size,
                       config.val_fraction,
                       config.seed,
                       given_tokenizer ? 0 : config.tokenizer_sample_bytes,
                       kCleaningVersion,
                       from_files ? config.document_bytes : 0,
                       given_checksum};

  const std::string out = config.out_dir.empty() ? "data/" + manifest.corpus : config.out_dir;
  const SwapPaths paths = swap_paths(out);
  recover_interrupted_swap(paths, config.log);

  // Reuse: everything if every file is intact; else the intact tokenizer (the slow part) and, with
  // it, any intact shard. A folder made from other text or settings is refused without --force:
  // checkpoints trained on it would stop matching it.
  const std::optional<Manifest> old = config.force ? std::nullopt : previous_manifest(out, log);
  const bool same_request = old && old->corpus == manifest.corpus &&
                            old->source_id == manifest.source_id &&
                            old->settings == manifest.settings;
  ECMOE_CHECK(!old || same_request, out, " holds data prepared from other text or settings (",
              differences(*old, manifest),
              "): pass --force to replace it (checkpoints trained on it will no longer load it), "
              "or choose another --out");
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
  // Everything is built in the staging folder; the old folder stays untouched until the swap.
  check_only_prepared_files(paths.out, out);
  prepare_output_dir(fs::path(paths.out).parent_path().string(), "--out's parent folder");
  std::error_code ec;
  fs::remove_all(paths.staging, ec);
  fs::create_directories(paths.staging, ec);
  ECMOE_CHECK(!ec, "cannot create ", paths.staging, ": ", ec.message());
  const std::string stage = paths.staging;
  struct StagingGuard {
    const std::string& dir;
    bool done = false;
    ~StagingGuard() {
      std::error_code ignored;
      if (!done) fs::remove_all(dir, ignored);
    }
  } guard{stage};

  if (!from_files) {
    const double t0 = now_seconds();
    docs = load_corpus(config.corpus, {config.cache_dir, config.log});
    int64_t bytes = 0;
    for (const auto& d : docs) bytes += int64_t(d.text.size());
    log("loaded ", docs.size(), " documents (", mb(bytes), " cleaned) in ", seconds_since(t0));
  }

  const SplitConfig split_config{config.val_fraction, config.seed};
  std::vector<FileTally> tally(input.files.size());
  std::vector<int> train_file, val_file;  // the input file of each document of a side
  if (from_files) {
    const std::vector<char> to_val = split_assignment(docs, split_config);
    for (std::size_t i = 0; i < docs.size(); ++i) {
      const int f = input.document_file[i];
      (to_val[i] ? val_file : train_file).push_back(f);
      ++(to_val[i] ? tally[f].val_documents : tally[f].train_documents);
    }
  }
  SplitDocuments split = split_documents(std::move(docs), split_config);
  log("split: ", split.train.size(), " train / ", split.val.size(), " validation documents");
  ECMOE_CHECK(given_tokenizer || !split.train.empty(), "no training documents");

  const std::string tokenizer_path = stage + "/" + kTokenizerFile;
  if (tokenizer_ok) {
    log("reusing ", out, "/", kTokenizerFile);
    link_or_copy(paths.out + "/" + kTokenizerFile, tokenizer_path);
  } else if (given_tokenizer) {
    fs::copy_file(config.tokenizer, tokenizer_path, fs::copy_options::overwrite_existing);
    ECMOE_CHECK(checksum_to_string(checksum_file(tokenizer_path)) == given_checksum, "tokenizer ",
                config.tokenizer, " changed while it was being copied");
    log("encoding with the existing tokenizer ", config.tokenizer, " (", given_vocab, " pieces, ",
        given_checksum, ")");
  } else {
    const double t0 = now_seconds();
    TokenizerTrainConfig tc;
    tc.vocab_size = config.vocab_size;
    tc.sample_bytes = config.tokenizer_sample_bytes;
    tc.seed = config.seed;
    const TrainedTokenizer trained = train_tokenizer_for_prepare(split.train, tc);
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
  bool tokens_known = true;
  for (const char* name : kSplitNames) {
    const bool is_train = std::string(name) == "train";
    if (tokenizer_ok && intact_shards.count(name)) {
      const std::string& file = old->splits.at(name).file;
      log("reusing ", out, "/", file);
      link_or_copy(paths.out + "/" + file, stage + "/" + file);
      manifest.splits[name] = old->splits.at(name);
      tokens_known = false;
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
    const std::vector<int>& file_of = is_train ? train_file : val_file;
    for (std::size_t d = 0; d < file_of.size(); ++d)
      tally[file_of[d]].tokens += stream.document_tokens[d];
    manifest.splits[name] = write_shard(stage, std::string(name) + ".bin", stream, manifest.dtype);
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
  if (from_files) {
    log("documents per input file (",
        config.document_bytes == 0
            ? std::string("one per file")
            : "cut at paragraph breaks after " + std::to_string(config.document_bytes) + " bytes",
        "):");
    log_file_summary(input, tally, tokens_known, log);
  }
  write_manifest(stage, manifest);
  swap_in(paths);
  guard.done = true;
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
