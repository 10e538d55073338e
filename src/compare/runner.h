// Runs a suite: each run trains in its own folder under the suite's output folder, then leaves a
// result.json. A run whose result.json is already there (same config) is skipped, so a suite
// that was stopped continues where it was; a folder that holds a different run is an error. A run
// stopped after a checkpoint (killed, or by the time limit) continues from that checkpoint.
// Finished runs made elsewhere (another machine, an earlier GPU session) can be imported, so one
// suite can be run in parts on machines that do not keep their disks.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "compare/suite.h"
#include "dist/comm.h"
#include "train/train_device.h"

namespace ecmoe::compare {

struct RunnerOptions {
  std::string out;                      // the suite's folder; run r trains in <out>/<r.name>
  std::vector<std::string> extra_sets;  // the user's --set, applied to every run last
  std::FILE* log = stderr;              // one line per run, and the runs' progress lines
  std::string commit;                   // source revision, recorded in each result.json
  // Under mpirun: every run trains on all ranks (experts sharded, batches split); rank 0 decides
  // which runs are done, logs, measures the post-training evaluations and writes result.json.
  const dist::Comm* comm = nullptr;
  // > 0: stop once this many seconds of wall time have passed, the run in progress at a
  // checkpoint (TrainOptions::time_limit_seconds); the same command again continues the suite.
  double time_limit_seconds = 0;
  // Not null: every run trains on this device (TrainOptions::device; one process), and the
  // post-training evaluations of decoders run there too (post_eval.h).
  const TrainDevice* device = nullptr;
  // Folders holding finished runs of this suite made elsewhere, one subfolder per run as in a
  // suite folder (or the runs/ folder of a report's figures). Before training, each run that is
  // not finished in `out` but finished in one of them (the first that has it) is copied into
  // `out`: every file of its folder, result.json last. Its config must be the run's (`out`
  // aside), else it is an error naming the folder.
  std::vector<std::string> import_from;
};

struct SuiteProgress {
  std::vector<std::string> dirs;  // each run's folder, in suite order
  int finished = 0;               // runs with a result.json
  bool complete() const { return finished == int(dirs.size()); }
};

SuiteProgress run_suite(const Suite& suite, const RunnerOptions& options);

// Only the import of run_suite (options.out locked meanwhile), for a report of runs made
// elsewhere. Returns how many runs were copied.
int import_runs(const Suite& suite, const RunnerOptions& options);

// The runs of `suite` that have a result.json in `out`: the folders a report covers.
std::vector<std::string> finished_run_dirs(const Suite& suite, const std::string& out);

}  // namespace ecmoe::compare
