// `ecmoe compare`: runs a suite of training runs that differ only in routing (compare/suite.h)
// and writes the comparison report (compare/report.h). docs/compare.md.
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "compare/finetune_suite.h"
#include "compare/report.h"
#include "compare/runner.h"
#include "compare/suite.h"
#include "core/error.h"
#include "core/threads.h"
#include "core/timer.h"
#include "io/process.h"

namespace ecmoe::cli {

namespace {

struct CompareArgs {
  std::string suite = "paper-small";
  bool quick = false;
  std::string out;
  std::string report;
  std::vector<std::string> sets;
  std::string precision;  // "": each config's own (fp32 unless a --set says otherwise)
  bool report_only = false;
  bool list = false;
  double time_limit_minutes = 0;
  std::string device = "cpu";
  std::string pretrained;          // finetune-small: paper-small's --out
  std::vector<std::string> tasks;  // finetune-small: task specs (default: the built-in ones)
  std::string cache_dir = "data/cache";
  std::vector<std::string> imports;  // folders of finished runs made elsewhere
};

// The source revision, when run inside the git checkout it was built from (git is started with
// an argument vector, no shell).
std::string source_commit() {
  const std::string commit = first_output_line({"git", "rev-parse", "--short=12", "HEAD"});
  if (commit.empty()) return "unknown (not run in a git checkout)";
  const bool dirty =
      !first_output_line({"git", "status", "--porcelain", "--untracked-files=no"}).empty();
  return commit + (dirty ? " (with uncommitted changes)" : "");
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return text;
}

// The overrides every run gets: --set ones, then --precision as `precision=P` (a key of both
// the training and the fine-tuning config).
std::vector<std::string> run_sets(const CompareArgs& a) {
  std::vector<std::string> sets = a.sets;
  if (!a.precision.empty()) sets.push_back("precision=" + a.precision);
  return sets;
}

std::string command_line(const CompareArgs& a, const std::string& out, const std::string& report) {
  std::string c = "ecmoe compare --suite " + a.suite + (a.quick ? " --quick" : "");
  if (!a.precision.empty()) c += " --precision " + a.precision;
  if (a.device != "cpu") c += " --device " + a.device;
  if (!a.pretrained.empty()) c += " --pretrained " + a.pretrained;
  for (const std::string& t : a.tasks) c += " --task " + t;
  c += " --out " + out + " --report " + report;
  for (const std::string& s : a.sets) c += " --set " + s;
  // A report-only command's imports only carried finished runs here: each run's result.json
  // says which commit made it, and the report lists those.
  if (!a.report_only)
    for (const std::string& i : a.imports) c += " --import " + i;
  if (a.time_limit_minutes > 0) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), " --time-limit %g", a.time_limit_minutes);
    c += limit;
  }
  return c;
}

void list_suite(const compare::Suite& suite, const std::vector<std::string>& extra_sets) {
  std::printf("%s\n  base config: %s, then:", suite.description.c_str(), suite.base_config.c_str());
  for (const std::string& s : suite.base_sets) std::printf(" %s", s.c_str());
  std::printf("\n");
  if (!extra_sets.empty()) {
    std::printf("  every run also:");
    for (const std::string& s : extra_sets) std::printf(" %s", s.c_str());
    std::printf("\n");
  }
  if (!suite.keep_checkpoints)
    std::printf("  a finished run's checkpoint is deleted once its results are written\n");
  for (const compare::SuiteRun& r : suite.runs) {
    std::printf("  %-14s %-16s %-8s seed %llu:", r.name.c_str(), r.variant.c_str(),
                r.family.c_str(), (unsigned long long)r.seed);
    for (const std::string& s : r.sets) std::printf(" %s", s.c_str());
    std::printf("%s\n", r.measure_leakage ? " (+ leakage)" : "");
  }
}

void run_finetune_command(const CompareArgs& a) {
  compare::FinetuneSuiteOptions options;
  options.quick = a.quick;
  options.pretrained = !a.pretrained.empty()
                           ? a.pretrained
                           : std::string("runs/compare/paper-small") + (a.quick ? "-quick" : "");
  options.out = !a.out.empty()
                    ? a.out
                    : std::string("runs/compare/finetune-small") + (a.quick ? "-quick" : "");
  options.tasks = a.tasks;
  options.sets = run_sets(a);
  options.cache_dir = a.cache_dir;
  const std::string report =
      !a.report.empty() ? a.report : (std::filesystem::path(options.out) / "report.md").string();
  const std::vector<compare::FinetuneRunInfo> runs = compare::finetune_suite_runs(options);
  if (a.list) {
    if (!options.sets.empty()) {
      std::printf("  every run also:");
      for (const std::string& s : options.sets) std::printf(" %s", s.c_str());
      std::printf("\n");
    }
    for (const compare::FinetuneRunInfo& r : runs)
      std::printf("  %-12s %-12s seed %llu  %s\n", r.variant.c_str(), r.task.c_str(),
                  (unsigned long long)r.seed, r.checkpoint.c_str());
    return;
  }
  const std::string commit = source_commit();
  const double start = now_seconds();
  if (!a.report_only) {
    options.device = train_device(a.device);
    compare::run_finetune_suite(runs, options);
  }
  CompareArgs shown = a;
  shown.pretrained = options.pretrained;
  compare::write_finetune_report(report, runs,
                                 {.command = command_line(shown, options.out, report),
                                  .commit = commit,
                                  .date = utc_now(),
                                  .threads = thread_count(),
                                  .wall_seconds = a.report_only ? 0.0 : now_seconds() - start});
  std::printf("report: %s\n", report.c_str());
}

}  // namespace

void register_compare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compare", "Run a suite of training runs that differ only in routing, and report on them");
  auto args = std::make_shared<CompareArgs>();
  cmd->add_option("--suite", args->suite,
                  "Suite to run: paper-small (pre-training on 2 CPU cores), paper-gpu (the same "
                  "question at 100x the tokens, for the GPU) or finetune-small (fine-tunes "
                  "paper-small's encoders); docs/compare.md");
  cmd->add_flag("--quick", args->quick,
                "A plumbing check that says nothing about the routers: paper-small's or "
                "paper-gpu's runs on the tiny model for 40 steps (~15 s on 2 cores); "
                "finetune-small's for 12 steps on 96 examples");
  cmd->add_option("--out", args->out,
                  "Folder of the runs (default runs/compare/SUITE, or SUITE-quick). Finished runs "
                  "found there are kept, so a stopped suite continues where it was");
  cmd->add_option("--report", args->report,
                  "Markdown report to write; figures and raw metrics go to the folder of the same "
                  "name beside it (default OUT/report.md)");
  cmd->add_option("--set", args->sets,
                  "Override a config key in every run, e.g. --set data.dir=DIR (repeatable)")
      ->type_name("KEY=VALUE");
  cmd->add_option("--precision", args->precision,
                  "Every run's GEMMs: fp32, bf16 operands with fp32 accumulation, or auto (bf16 "
                  "where this CPU has bf16 instructions); as --set precision=P, recorded in "
                  "each run's config.json and the report's command")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  cmd->add_option("--device", args->device,
                  "Where the runs train (or, for finetune-small, fine-tune): cpu, or cuda (the "
                  "GPU: ecmoe built with -DECMOE_CUDA=ON, one process; docs/cuda.md)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--report-only", args->report_only,
                "Write the report from the finished runs in --out (and --import) without "
                "training; a suite not yet finished gets a partial report");
  cmd->add_option("--import", args->imports,
                  "A folder of finished runs of this suite made elsewhere (another machine, an "
                  "earlier GPU session): a suite folder, or the runs/ folder beside a report. "
                  "Runs --out lacks are copied into it first and kept (repeatable)")
      ->type_name("DIR");
  cmd->add_flag("--list", args->list, "Print the suite's runs and exit");
  cmd->add_option("--time-limit", args->time_limit_minutes,
                  "Stop after this many minutes of wall time (the run in progress at a "
                  "checkpoint); the same command again continues the suite. 0: no limit")
      ->check(CLI::NonNegativeNumber)
      ->type_name("MINUTES");
  cmd->add_option("--pretrained", args->pretrained,
                  "finetune-small: the --out folder of paper-small (default runs/compare/"
                  "paper-small, or paper-small-quick)");
  cmd->add_option("--task", args->tasks,
                  "finetune-small: a task to fine-tune on, as for `ecmoe finetune --task` "
                  "(repeatable; default: every built-in task)");
  cmd->add_option("--cache", args->cache_dir,
                  "finetune-small: where the built-in tasks' raw data is fetched (data/cache)");
  cmd->callback([args] {
    if (args->suite == "finetune-small") {
      require_one_process("compare --suite finetune-small");
      ECMOE_CHECK(args->time_limit_minutes == 0,
                  "--time-limit applies to the pre-training suites, not finetune-small");
      ECMOE_CHECK(args->imports.empty(),
                  "--import applies to the pre-training suites, not finetune-small");
      run_finetune_command(*args);
      return;
    }
    const compare::Suite suite = compare::make_suite(args->suite, args->quick);
    if (args->list) {
      list_suite(suite, run_sets(*args));
      return;
    }
    const std::string out = !args->out.empty()
                                ? args->out
                                : "runs/compare/" + suite.name + (args->quick ? "-quick" : "");
    const std::string report =
        !args->report.empty() ? args->report : (std::filesystem::path(out) / "report.md").string();
    // The revision is read before the runs: the tree may change while a long suite runs.
    const std::string commit = source_commit();
    const double start = now_seconds();
    std::vector<std::string> dirs;
    const compare::RunnerOptions options{.out = out,
                                         .extra_sets = run_sets(*args),
                                         .commit = commit,
                                         .comm = &comm(),
                                         .time_limit_seconds = args->time_limit_minutes * 60.0,
                                         .device = nullptr,
                                         .import_from = args->imports};
    if (args->report_only) {
      if (!comm().is_root()) return;  // rank 0 imports and writes the report
      if (!args->imports.empty()) compare::import_runs(suite, options);
      dirs = compare::finished_run_dirs(suite, out);
      ECMOE_CHECK(!dirs.empty(), "no finished runs of ", suite.name, " in ", out,
                  " to report on (--import DIR brings runs made elsewhere)");
    } else {
      compare::RunnerOptions training = options;
      training.device = train_device(args->device);
      const compare::SuiteProgress progress = compare::run_suite(suite, training);
      if (!progress.complete()) {
        if (comm().is_root())
          std::printf(
              "stopped by the time limit: %d of %zu runs finished in %s; the same "
              "command again continues, and writes the report when all have finished\n",
              progress.finished, progress.dirs.size(), out.c_str());
        return;
      }
      dirs = progress.dirs;
    }
    if (!comm().is_root()) return;  // rank 0 writes the report
    compare::write_report(report, dirs,
                          {.suite_description = suite.description,
                           .command = command_line(*args, out, report),
                           .commit = commit,
                           .date = utc_now(),
                           .threads = thread_count(),
                           .ranks = comm().size(),
                           .wall_seconds = args->report_only ? 0.0 : now_seconds() - start,
                           .report_only = args->report_only,
                           .runs_in_suite = int(suite.runs.size())});
    std::printf("report: %s\n", report.c_str());
  });
}

}  // namespace ecmoe::cli
