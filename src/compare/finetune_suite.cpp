#include "compare/finetune_suite.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "compare/run_record.h"
#include "compare/seed_stats.h"
#include "compare/suite.h"
#include "core/error.h"
#include "finetune/builtin_tasks.h"
#include "finetune/finetune.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "train/checkpoint.h"
#include "train/config_overrides.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {

namespace {

// The pre-trained variants that are fine-tuned (the paper's Table 2 rows, EC-CAP included).
const std::vector<std::string>& finetuned_variants() {
  static const std::vector<std::string> names = {"dense",  "top-1",      "top-2",
                                                 "EC c=2", "EC-CAP b=2", "EC-CAP b=3"};
  return names;
}

constexpr int kSeeds = 3;

// A task spec as a folder name ("glue:sst2:/x/y" -> "glue_sst2").
std::string task_slug(const std::string& task) {
  std::string head = task.rfind("glue:", 0) == 0 ? task.substr(0, task.find(':', 5)) : task;
  for (char& c : head)
    if (!std::isalnum((unsigned char)c) && c != '-') c = '_';
  return head;
}

std::string variant_slug(const std::string& variant) {
  std::string out;
  for (char c : variant) out += std::isalnum((unsigned char)c) || c == '.' ? c : '-';
  return out;
}

finetune::FinetuneConfig run_config(const FinetuneRunInfo& run,
                                    const FinetuneSuiteOptions& options) {
  ConfigJson json = finetune::finetune_config_to_json(finetune::FinetuneConfig{});
  std::vector<std::string> sets;
  if (options.quick)  // plumbing only: a few steps on a few examples
    sets = {"steps=12", "max_train_examples=96", "eval_interval=4", "batch_size=16"};
  sets.insert(sets.end(), options.sets.begin(), options.sets.end());
  apply_overrides(json, sets);
  json["checkpoint"] = run.checkpoint;
  json["task"] = run.task;
  json["seed"] = run.seed;
  json["cache_dir"] = options.cache_dir;
  json["out"] = run.dir;
  return finetune::finetune_config_from_json(json);
}

bool already_done(const FinetuneRunInfo& run, const finetune::FinetuneConfig& config) {
  const fs::path result = fs::path(run.dir) / "result.json",
                 saved = fs::path(run.dir) / "config.json";
  if (!fs::exists(result) || !fs::exists(saved)) return false;
  const ConfigJson j = parse_ordered_json(read_input_file(saved.string(), "config file"),
                                          saved.string() + " (delete the folder to run it again)");
  // Read back through the config reader: a folder written before a key existed holds that key's
  // default, and is compared as such.
  ECMOE_CHECK(finetune::finetune_config_to_json(finetune::finetune_config_from_json(j)) ==
                  finetune::finetune_config_to_json(config),
              run.dir,
              " holds a finished fine-tuning run with a different config: choose another --out, "
              "or delete the folder to run it again");
  return true;
}

Json read_json(const std::string& path) {
  return parse_ordered_json(read_input_file(path, "file"), path);
}

// The pooling a run used, from its saved config.
std::string pooling_of(const FinetuneRunInfo& run) {
  const Json config = read_json((fs::path(run.dir) / "config.json").string());
  return config.contains("pooling") ? config["pooling"].get<std::string>() : "?";
}

struct Cell {
  std::vector<double> accuracy, macro_f1, seconds, steps;
  double majority = 0;
};

std::string pct(double mean_value, double std_value, bool with_std) {
  char text[64];
  if (with_std)
    std::snprintf(text, sizeof(text), "%.1f ± %.1f", 100 * mean_value, 100 * std_value);
  else
    std::snprintf(text, sizeof(text), "%.1f", 100 * mean_value);
  return text;
}

}  // namespace

std::vector<FinetuneRunInfo> finetune_suite_runs(const FinetuneSuiteOptions& options) {
  ECMOE_CHECK(!options.pretrained.empty(),
              "finetune-small needs --pretrained DIR: the --out "
              "folder of `ecmoe compare --suite paper-small`");
  const Suite pretrain = make_suite("paper-small", options.quick);
  const std::vector<std::string> tasks =
      options.tasks.empty() ? finetune::builtin_task_names() : options.tasks;
  std::vector<FinetuneRunInfo> runs;
  for (const std::string& variant : finetuned_variants()) {
    std::vector<std::string> checkpoints;
    for (const SuiteRun& r : pretrain.runs)
      if (r.variant == variant && r.family == "encoder")
        checkpoints.push_back((fs::path(options.pretrained) / r.name / kCheckpointFile).string());
    ECMOE_CHECK(!checkpoints.empty(), "suite paper-small has no variant '", variant, "'");
    for (const std::string& c : checkpoints)
      ECMOE_CHECK(fs::exists(c), "missing pre-trained checkpoint ", c,
                  ": run `ecmoe compare --suite paper-small", options.quick ? " --quick" : "",
                  " --out ", options.pretrained, "` first");
    for (const std::string& task : tasks)
      for (int s = 1; s <= kSeeds; ++s) {
        FinetuneRunInfo run;
        run.variant = variant;
        run.checkpoint = checkpoints.size() >= kSeeds ? checkpoints[s - 1] : checkpoints[0];
        run.task = task;
        run.seed = uint64_t(s);
        run.dir = (fs::path(options.out) / variant_slug(variant) /
                   (task_slug(task) + "-s" + std::to_string(s)))
                      .string();
        runs.push_back(run);
      }
  }
  return runs;
}

void run_finetune_suite(const std::vector<FinetuneRunInfo>& runs,
                        const FinetuneSuiteOptions& options) {
  // Each task is loaded (and fetched, the first time) once for all the runs that use it.
  std::map<std::string, finetune::TaskData> tasks;
  const int total = int(runs.size());
  for (int i = 0; i < total; ++i) {
    const FinetuneRunInfo& run = runs[i];
    const finetune::FinetuneConfig config = run_config(run, options);
    if (already_done(run, config)) {
      std::fprintf(options.log, "[%d/%d] %s: done before, kept\n", i + 1, total, run.dir.c_str());
      continue;
    }
    if (!tasks.count(run.task)) {
      finetune::TaskSourceOptions source;
      source.cache_dir = options.cache_dir;
      source.log = [&](const std::string& line) {
        std::fprintf(options.log, "%s\n", line.c_str());
      };
      tasks.emplace(run.task, finetune::load_task(run.task, source));
    }
    std::fprintf(options.log, "[%d/%d] %s on %s, seed %llu\n", i + 1, total, run.variant.c_str(),
                 run.task.c_str(), (unsigned long long)run.seed);
    std::fflush(options.log);
    const finetune::FinetuneResult r = finetune::run_finetune(
        config, tasks.at(run.task),
        {.progress = nullptr, .save_model = false, .device = options.device});
    std::fprintf(options.log, "  test accuracy %.4f, macro-F1 %.4f (%lld steps, %.1f s)\n",
                 r.test.accuracy, r.test.macro_f1, (long long)r.steps, r.seconds);
  }
}

void write_finetune_report(const std::string& path, const std::vector<FinetuneRunInfo>& runs,
                           const FinetuneReportInfo& info) {
  ECMOE_CHECK(!runs.empty(), "no fine-tuning runs to report");
  std::vector<std::string> variants, tasks;
  std::map<std::pair<std::string, std::string>, Cell> cells;
  const fs::path report(path);
  const fs::path raw = report.parent_path() / report.stem() / "runs";
  int finished = 0;
  for (const FinetuneRunInfo& run : runs) {
    // A report of a suite still running (or stopped) covers the runs finished so far.
    if (!fs::exists(fs::path(run.dir) / "result.json")) continue;
    ++finished;
    const Json r = read_json((fs::path(run.dir) / "result.json").string());
    const std::string task = r.at("task").get<std::string>();
    if (std::find(variants.begin(), variants.end(), run.variant) == variants.end())
      variants.push_back(run.variant);
    if (std::find(tasks.begin(), tasks.end(), task) == tasks.end()) tasks.push_back(task);
    Cell& c = cells[{run.variant, task}];
    c.accuracy.push_back(r.at("test").at("accuracy").get<double>());
    c.macro_f1.push_back(r.at("test").at("macro_f1").get<double>());
    c.seconds.push_back(r.at("seconds").get<double>());
    c.steps.push_back(double(r.at("steps").get<int64_t>()));
    c.majority = r.at("majority_baseline").at("accuracy").get<double>();
    const fs::path to =
        raw / fs::path(run.dir).parent_path().filename() / fs::path(run.dir).filename();
    fs::create_directories(to);
    for (const char* file : {"config.json", "result.json"})
      fs::copy_file(fs::path(run.dir) / file, to / file, fs::copy_options::overwrite_existing);
  }

  ECMOE_CHECK(finished > 0, "no finished fine-tuning runs to report");
  std::ostringstream md;
  md << "# Fine-tuning comparison: suite finetune-small\n\n";
  if (finished < int(runs.size()))
    md << "**Partial: " << finished << " of " << runs.size()
       << " runs finished; cells average the seeds that did.**\n\n";
  md << "Made by `" << info.command << "` at commit `" << info.commit << "` on " << info.date
     << ", " << info.threads << " threads";
  if (info.wall_seconds > 0) {
    char minutes[32];
    std::snprintf(minutes, sizeof(minutes), "%.1f", info.wall_seconds / 60);
    md << ", " << minutes << " minutes in all";
  }
  md << ". Each pre-trained encoder of suite paper-small ([pretrain.md](pretrain.md)) is "
        "fine-tuned as a whole (router included; expert choice keeps choosing its top-k tokens "
        "within each fine-tuning batch) with a linear classification head on the hidden states "
        "(pooling: "
     << (runs.empty() ? std::string("?") : pooling_of(runs.front()))
     << "), with early stopping on dev; the numbers are test accuracy (%) of the best dev "
        "checkpoint, "
        "mean ± std over "
     << kSeeds
     << " seeds (docs/compare.md says how seeds pair with pre-training seeds). Tasks, splits and "
        "budgets: [../finetune.md](../finetune.md).\n\n";

  // Averages over tasks, per seed index, so the average has a spread too.
  auto average_over_tasks = [&](const std::string& variant, bool f1) {
    std::vector<double> per_seed(kSeeds, 0.0);
    for (const std::string& task : tasks) {
      const auto it = cells.find({variant, task});
      if (it == cells.end()) continue;
      const Cell& c = it->second;
      const auto& v = f1 ? c.macro_f1 : c.accuracy;
      for (int s = 0; s < kSeeds && s < int(v.size()); ++s)
        per_seed[s] += v[s] / double(tasks.size());
    }
    return per_seed;
  };
  auto table = [&](bool f1) {
    md << "| pre-trained with |";
    for (const std::string& t : tasks) md << ' ' << t << " |";
    md << " average |\n| --- |";
    for (std::size_t i = 0; i <= tasks.size(); ++i) md << " --- |";
    md << '\n';
    for (const std::string& v : variants) {
      md << "| " << v << " |";
      for (const std::string& t : tasks) {
        const auto it = cells.find({v, t});
        if (it == cells.end()) {
          md << " - |";
          continue;
        }
        const auto& x = f1 ? it->second.macro_f1 : it->second.accuracy;
        md << ' ' << pct(mean(x), sample_std(x), true) << " |";
      }
      const std::vector<double> avg = average_over_tasks(v, f1);
      md << " **" << pct(mean(avg), sample_std(avg), true) << "** |\n";
    }
    if (!f1) {
      md << "| majority class |";
      double avg = 0;
      for (const std::string& t : tasks) {
        md << ' ' << pct(cells.at({variants.front(), t}).majority, 0, false) << " |";
        avg += cells.at({variants.front(), t}).majority / double(tasks.size());
      }
      md << ' ' << pct(avg, 0, false) << " |\n";
    }
    md << '\n';
  };
  md << "## Test accuracy (%)\n\n";
  table(false);
  // The verdict: the paper's order is EC > top-2 > top-1 on average.
  std::vector<std::pair<double, std::string>> ranking;
  for (const std::string& v : variants) ranking.push_back({mean(average_over_tasks(v, false)), v});
  std::sort(ranking.rbegin(), ranking.rend());
  md << "Ranking by average test accuracy: ";
  for (std::size_t i = 0; i < ranking.size(); ++i)
    md << (i ? " > " : "") << ranking[i].second << " (" << pct(ranking[i].first, 0, false) << ")";
  md << ". The paper (100M/32E, average over 11 GLUE/SuperGLUE tasks): EC c=2 85.0 > top-2 "
        "(GShard) 83.5 > top-1 (Switch) 80.6.\n\n";
  md << "## Test macro-F1 (%)\n\nThe mean over classes of F1: it shows what accuracy hides on "
        "the unbalanced tasks (spam, the 45 supersense classes).\n\n";
  table(true);
  md << "## Cost\n\n| pre-trained with | mean steps per run | mean seconds per run |\n"
        "| --- | --- | --- |\n";
  for (const std::string& v : variants) {
    std::vector<double> steps, seconds;
    for (const std::string& t : tasks) {
      const auto it = cells.find({v, t});
      if (it == cells.end()) continue;
      const Cell& c = it->second;
      steps.insert(steps.end(), c.steps.begin(), c.steps.end());
      seconds.insert(seconds.end(), c.seconds.begin(), c.seconds.end());
    }
    char row[128];
    std::snprintf(row, sizeof(row), "| %s | %.0f | %.1f |\n", v.c_str(), mean(steps),
                  mean(seconds));
    md << row;
  }
  md << "\nRaw results (each run's config.json and result.json, with its dev history) are in `"
     << report.stem().string() << "/runs/`.\n";
  write_file_atomically(path, md.str());
}

}  // namespace ecmoe::compare
