// The comparison report: a Markdown file with the suite's tables, a verdict on the paper's
// claims computed from them, figures (plots.h) and a copy of every run's raw metrics, all in
// <report>.md and the folder <report>/ beside it.
#pragma once
#include <string>
#include <vector>

#include "compare/run_record.h"

namespace ecmoe::compare {

struct ReportInfo {
  std::string suite_description;
  std::string command;  // how the runs were made, shown verbatim
  std::string commit;   // source revision of the binary that made them
  std::string date;
  int threads = 0;
  int ranks = 1;             // MPI ranks the runs trained on (threads are per rank)
  double wall_seconds = 0;   // the whole suite, evaluations included (0: not known)
  bool report_only = false;  // the runs were made earlier (their revision is in result.json)
  int runs_in_suite = 0;     // more than the runs reported: a partial report says so
};

// Writes <path> (Markdown) and <stem>/: the figures, their data and script, and runs/<name>/
// with each run's metrics.jsonl, result.json and config.json. `run_dirs` are the runs' folders.
void write_report(const std::string& path, const std::vector<std::string>& run_dirs,
                  const ReportInfo& info);

}  // namespace ecmoe::compare
