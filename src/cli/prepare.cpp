// `ecmoe prepare`: fetch and clean a corpus (or user files), train the tokenizer (or take an
// existing one: --tokenizer), write token shards and their manifest. See data/prepare.h for what
// lands in the output folder.
#include "data/prepare.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "cli/commands.h"
#include "core/error.h"
#include "data/corpus.h"
#include "data/manifest.h"
#include "train/checkpoint.h"

namespace ecmoe::cli {

namespace {

// --tokenizer's argument as a SentencePiece model file: a prepared data folder (its tokenizer,
// checked against its manifest), a pre-training checkpoint (the tokenizer it records, found and
// checked as eval and generate find it), or a model file itself.
std::string tokenizer_model_path(const std::string& arg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  ECMOE_CHECK(fs::exists(arg, ec), "--tokenizer ", arg, " does not exist");
  if (fs::is_directory(arg, ec)) {
    ECMOE_CHECK(fs::exists(fs::path(arg) / data::kManifestFile, ec), "--tokenizer ", arg,
                " is a folder without ", data::kManifestFile,
                ": give a folder written by `ecmoe prepare`, a checkpoint or a tokenizer model");
    const data::Manifest manifest = data::read_manifest(arg);
    const auto problem = data::check_file(arg, manifest.tokenizer);
    ECMOE_CHECK(!problem, "--tokenizer ", arg, ": ", manifest.tokenizer.file, " ",
                problem.value_or(""));
    return (fs::path(arg) / manifest.tokenizer.file).string();
  }
  if (fs::path(arg).extension() == ".safetensors") {
    const Checkpoint checkpoint = Checkpoint::open(arg);
    return checkpoint_tokenizer_path(checkpoint, "", "the data folder or tokenizer model instead");
  }
  return arg;  // data::prepare loads it, which checks that it is a tokenizer made by prepare
}

}  // namespace

void register_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prepare",
      "Fetch and clean a corpus (or your text files), train a tokenizer (or take an existing "
      "one), write token shards");
  auto config = std::make_shared<data::PrepareConfig>();
  std::string corpora;
  for (const auto& name : data::known_corpora()) corpora += (corpora.empty() ? "" : ", ") + name;
  auto* corpus = cmd->add_option("--corpus", config->corpus, "Named corpus: " + corpora)
                     ->capture_default_str();
  auto* input = cmd->add_option("--input", config->inputs,
                                "UTF-8 text files or folders to prepare instead of a named corpus "
                                "(files are cut into documents: see --doc-bytes)")
                    ->excludes(corpus);
  cmd->add_option("--include", config->include,
                  "Glob (fnmatch) choosing the files of --input folders, matched against the file "
                  "name, or the path inside the folder when it holds '/'; repeatable. Default: "
                  "every file but data, markup and binary formats (.json, .csv, .html, images, "
                  "archives, ...) and non-UTF-8 files, which are skipped with a note")
      ->needs(input);
  cmd->add_option("--doc-bytes", config->document_bytes,
                  "Cut --input files into documents (the unit of the train/validation split, "
                  "each ending with EOS) at the first blank line after this many bytes of text, "
                  "or the first line break after twice as many; 0: each file one document")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(input);
  auto tokenizer_arg = std::make_shared<std::string>();
  auto* tokenizer =
      cmd->add_option("--tokenizer", *tokenizer_arg,
                      "Encode with an existing tokenizer instead of training one: a data folder "
                      "from `ecmoe prepare`, a pre-training checkpoint (the tokenizer it was "
                      "trained with) or a tokenizer .model file. Checkpoints trained on data with "
                      "that tokenizer then accept this folder (eval --data, train --resume)");
  auto* out = cmd->add_option("--out", config->out_dir, "Output folder (default: data/<corpus>)");
  cmd->add_option("--cache", config->cache_dir, "Folder for fetched packages")
      ->capture_default_str();
  cmd->add_option("--vocab-size", config->vocab_size, "Tokenizer vocabulary size")
      ->capture_default_str()
      ->excludes(tokenizer);
  cmd->add_option("--val-fraction", config->val_fraction,
                  "Expected share of documents held out for validation (1 with --tokenizer: "
                  "every document, text to evaluate on)")
      ->capture_default_str();
  cmd->add_option("--seed", config->seed, "Seed of the split and the tokenizer's text sample")
      ->capture_default_str();
  cmd->add_flag("--force", config->force,
                "Rebuild even if the output folder is valid, or holds data prepared from other "
                "text or settings");
  cmd->callback([config, out, tokenizer_arg] {
    require_one_process("prepare");
    ECMOE_CHECK(out->count() == 0 || !config->out_dir.empty(),
                "--out is empty: give the folder to write into");
    ECMOE_CHECK(config->inputs.empty() || !config->out_dir.empty(),
                "--input needs --out DIR (where to write the prepared data)");
    if (!tokenizer_arg->empty()) config->tokenizer = tokenizer_model_path(*tokenizer_arg);
    config->log = [](const std::string& line) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    };
    const auto result = data::prepare(*config);
    const auto& m = result.manifest;
    std::printf("corpus %s: vocab %d, %s tokens\n", m.corpus.c_str(), m.vocab_size,
                data::dtype_name(m.dtype).c_str());
    for (const auto& [name, s] : m.splits)
      std::printf("  %-5s %10lld tokens %6lld documents  %s/%s (%lld bytes)\n", name.c_str(),
                  (long long)s.tokens, (long long)s.documents, result.out_dir.c_str(),
                  s.file.c_str(), (long long)s.bytes);
    std::filesystem::path dir = std::filesystem::path(result.out_dir).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path();  // "data/x/" -> "data/x"
    const std::string name = dir.filename().string();
    const auto train = m.splits.find("train");
    if (train != m.splits.end() && train->second.tokens == 0)  // --val-fraction 1: text to score
      std::printf(
          "next: ecmoe eval --checkpoint CHECKPOINT --data %s (a checkpoint trained on data with "
          "this tokenizer)\n",
          result.out_dir.c_str());
    else
      std::printf("next: ecmoe train --config small --set data.dir=%s --out runs/%s\n",
                  result.out_dir.c_str(), name.empty() ? "NAME" : name.c_str());
  });
}

}  // namespace ecmoe::cli
