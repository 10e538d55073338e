// `ecmoe prepare`: fetch and clean a corpus (or user files), train the tokenizer, write token
// shards and their manifest. See data/prepare.h for what lands in the output folder.
#include "data/prepare.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "data/corpus.h"

namespace ecmoe::cli {

void register_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prepare",
      "Fetch and clean a corpus (or your text files), train a tokenizer, write token shards");
  auto config = std::make_shared<data::PrepareConfig>();
  std::string corpora;
  for (const auto& name : data::known_corpora()) corpora += (corpora.empty() ? "" : ", ") + name;
  auto* corpus = cmd->add_option("--corpus", config->corpus, "Named corpus: " + corpora)
                     ->capture_default_str();
  cmd->add_option("--input", config->inputs,
                  "UTF-8 text files or folders to prepare instead of a named corpus (each file is "
                  "one document)")
      ->excludes(corpus);
  auto* out = cmd->add_option("--out", config->out_dir, "Output folder (default: data/<corpus>)");
  cmd->add_option("--cache", config->cache_dir, "Folder for fetched packages")
      ->capture_default_str();
  cmd->add_option("--vocab-size", config->vocab_size, "Tokenizer vocabulary size")
      ->capture_default_str();
  cmd->add_option("--val-fraction", config->val_fraction,
                  "Expected share of documents held out for validation")
      ->capture_default_str();
  cmd->add_option("--seed", config->seed, "Seed of the split and the tokenizer's text sample")
      ->capture_default_str();
  cmd->add_flag("--force", config->force,
                "Rebuild even if the output folder is valid, or holds data prepared from other "
                "text or settings");
  cmd->callback([config, out] {
    require_one_process("prepare");
    ECMOE_CHECK(out->count() == 0 || !config->out_dir.empty(),
                "--out is empty: give the folder to write into");
    ECMOE_CHECK(config->inputs.empty() || !config->out_dir.empty(),
                "--input needs --out DIR (where to write the prepared data)");
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
    std::printf("next: ecmoe train --config small --set data.dir=%s --out runs/%s\n",
                result.out_dir.c_str(), name.empty() ? "NAME" : name.c_str());
  });
}

}  // namespace ecmoe::cli
