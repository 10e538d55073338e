#include "compare/runner.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "compare/post_eval.h"
#include "compare/run_record.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "io/dir_lock.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "io/output_dir.h"
#include "train/checkpoint.h"
#include "train/config_overrides.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {

namespace {

TrainConfig run_config(const Suite& suite, const SuiteRun& run, const RunnerOptions& options,
                       const std::string& dir) {
  ConfigJson json = read_config_file(resolve_config_path(suite.base_config));
  std::vector<std::string> sets = run_overrides(suite, run);
  sets.insert(sets.end(), options.extra_sets.begin(), options.extra_sets.end());
  apply_overrides(json, sets);
  json["out"] = dir;
  TrainConfig config = config_from_json(json);
  config.validate();
  return config;
}

// Whether the finished run in <dir> has this config (the folder it was trained in aside: a suite
// folder may be moved, and runs are imported from elsewhere).
bool same_config(const std::string& dir, const TrainConfig& config) {
  const fs::path result = fs::path(dir) / kResultFile;
  const Json j = parse_ordered_json(read_input_file(result.string(), "result file"),
                                    result.string() + " (delete the folder to run it again)");
  ECMOE_CHECK(j.contains("config"), result.string(),
              " is not a result file: delete the folder to run it again");
  TrainConfig done = config_from_json(j["config"]);
  done.model.vocab_size = config.model.vocab_size;  // 0 (from the data) before a run resolves it
  done.out = config.out;
  return config_to_json(done) == config_to_json(config);
}

// True when <dir> holds a finished run of exactly this config.
bool already_done(const std::string& dir, const TrainConfig& config) {
  if (!fs::exists(fs::path(dir) / kResultFile)) return false;
  ECMOE_CHECK(same_config(dir, config), dir,
              " holds a finished run with a different config: choose another --out, or delete "
              "the folder to run it again");
  return true;
}

Json result_json(const SuiteRun& run, const TrainResult& r) {
  Json j;
  j["name"] = run.name;
  j["variant"] = run.variant;
  j["family"] = run.family;
  j["seed"] = run.seed;
  j["router"] = router_name(r.config.model.moe.router);
  j["steps"] = r.last_step;
  j["tokens_per_step"] = int64_t(r.config.batch_size) * r.config.model.seq_len;
  j["train_seconds"] = r.seconds;
  j["tokens_per_second"] = r.tokens_per_second;
  ECMOE_CHECK(r.final_eval.has_value(), run.name, ": a suite run needs eval.batches > 0");
  j["final"] = {{"loss", r.final_eval->loss}, {"perplexity", r.final_eval->perplexity}};
  j["checkpoint"] = r.checkpoint;
  j["config"] = config_to_json(r.config);
  return j;
}

bool has_result(const fs::path& dir) { return fs::exists(dir / kResultFile); }

// Copies the finished run in `from` to `to`: every regular file but the folder lock, each
// atomically and result.json last, so that an interrupted import leaves an unfinished run. A
// checkpoint left in `to` by an unfinished run of its own is removed when `from` has none.
void copy_run(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == kLockFile || name == kResultFile) continue;
    copy_file_atomically(e.path().string(), (to / name).string());
  }
  if (!fs::exists(from / kCheckpointFile)) fs::remove(to / kCheckpointFile);
  copy_file_atomically((from / kResultFile).string(), (to / kResultFile).string());
}

int import_unlocked(const Suite& suite, const RunnerOptions& options) {
  int imported = 0;
  for (const std::string& source : options.import_from)
    ECMOE_CHECK(fs::is_directory(source), "--import '", source, "' is not a folder");
  for (const SuiteRun& run : suite.runs) {
    const fs::path dir = fs::path(options.out) / run.name;
    if (has_result(dir)) continue;  // its own finished run wins (checked against the config later)
    for (const std::string& source : options.import_from) {
      const fs::path from = fs::path(source) / run.name;
      if (!has_result(from)) continue;
      ECMOE_CHECK(same_config(from.string(), run_config(suite, run, options, dir.string())),
                  from.string(), " holds a finished run with a different config than this suite's ",
                  run.name,
                  " (other --set options, or another version of the suite): not imported");
      copy_run(from, dir);
      std::fprintf(options.log, "%s: imported from %s\n", run.name.c_str(), from.c_str());
      ++imported;
      break;
    }
  }
  return imported;
}

}  // namespace

int import_runs(const Suite& suite, const RunnerOptions& options) {
  ECMOE_CHECK(!options.out.empty(), "compare needs an output folder");
  const DirLock lock = claim_output_dir(options.out, "compare --out", "suite folder");
  return import_unlocked(suite, options);
}

std::vector<std::string> finished_run_dirs(const Suite& suite, const std::string& out) {
  std::vector<std::string> dirs;
  for (const SuiteRun& run : suite.runs)
    if (has_result(fs::path(out) / run.name)) dirs.push_back((fs::path(out) / run.name).string());
  return dirs;
}

SuiteProgress run_suite(const Suite& suite, const RunnerOptions& options) {
  ECMOE_CHECK(!options.out.empty(), "compare needs an output folder");
  const dist::Comm single = dist::Comm::single();
  const dist::Comm& comm = options.comm ? *options.comm : single;
  const bool root = comm.is_root();
  // One suite per folder at a time (each run's folder is locked by train() as well).
  const DirLock lock =
      root ? claim_output_dir(options.out, "compare --out", "suite folder") : DirLock();
  if (root) import_unlocked(suite, options);
  // Rank 0 logs; train() itself silences the other ranks' progress.
  SuiteProgress progress;
  const int total = int(suite.runs.size());
  for (const SuiteRun& run : suite.runs)
    progress.dirs.push_back((fs::path(options.out) / run.name).string());
  const double start = now_seconds(), limit = options.time_limit_seconds;
  bool out_of_time = false, started_any = false;
  for (int i = 0; i < total; ++i) {
    const SuiteRun& run = suite.runs[i];
    const std::string& dir = progress.dirs[i];
    TrainConfig config = run_config(suite, run, options, dir);
    if (comm.root_decides(root && already_done(dir, config))) {
      if (root)
        std::fprintf(options.log, "[%d/%d] %s: done before, kept\n", i + 1, total,
                     run.name.c_str());
      ++progress.finished;
      continue;
    }
    if (out_of_time) continue;  // counted: the runs after the stop stay to do
    // Under a time limit, a call always trains its first pending run (at least a step), and
    // starts no other run once the time is up.
    const double left = limit > 0 ? limit - (now_seconds() - start) : 0;
    if (limit > 0 && started_any && comm.root_decides(root && left <= 0)) {
      out_of_time = true;
      continue;
    }
    started_any = true;
    // A run killed after a checkpoint continues from it; one killed before starts again.
    const bool resume = comm.root_decides(root && fs::exists(fs::path(dir) / kCheckpointFile));
    if (root) {
      std::fprintf(options.log, "[%d/%d] %s (%s, seed %llu)%s\n", i + 1, total, run.name.c_str(),
                   run.variant.c_str(), (unsigned long long)run.seed, resume ? ": resuming" : "");
      std::fflush(options.log);
    }
    const TrainResult r = train(config, {.resume = resume,
                                         .terminal = false,
                                         .progress = options.log,
                                         .comm = &comm,
                                         .time_limit_seconds = limit > 0 ? std::max(left, 1e-9) : 0,
                                         .device = options.device});
    if (r.stopped) {
      out_of_time = true;
      continue;
    }
    ++progress.finished;
    if (!root) continue;
    Json result = result_json(run, r);
    result["commit"] = options.commit;
    if (run.measure_leakage) {
      Json post = Json::array();
      post.push_back(post_eval_to_json(evaluate_checkpoint(r.checkpoint, "", options.device)));
      for (const std::string& router : run.eval_routers)
        post.push_back(
            post_eval_to_json(evaluate_checkpoint(r.checkpoint, router, options.device)));
      result["post_evals"] = post;
    }
    result["checkpoint_kept"] = suite.keep_checkpoints;
    write_file_atomically((fs::path(dir) / kResultFile).string(), result.dump(2) + "\n");
    if (!suite.keep_checkpoints) fs::remove(fs::path(dir) / kCheckpointFile);
  }
  if (root && !progress.complete())
    std::fprintf(options.log,
                 "time limit: %d of %d runs finished; the same command again continues the "
                 "suite (an unfinished run from its checkpoint)\n",
                 progress.finished, total);
  return progress;
}

}  // namespace ecmoe::compare
