// A comparison suite: runs that share one base config (architecture, data, token budget) and
// differ only in what is being compared (the router and its options) and the seed. The suites
// are data, defined here, so that `ecmoe compare --list` and the reports can show them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ecmoe::compare {

struct SuiteRun {
  std::string name;     // folder under the suite's output, e.g. "ec-c2-s1"
  std::string variant;  // what is compared, shared by the seeds of one setting, e.g. "EC c=2"
  std::string family;   // runs are compared within a family: "encoder" or "decoder"
  uint64_t seed = 1;    // seeds.init and seeds.data (validation set and masks stay fixed)
  std::vector<std::string> sets;  // --set overrides on top of the suite's base
  bool measure_leakage = false;   // decoders: how much the future changes the past's loss
  // Decoders: routers to evaluate the final checkpoint with besides its own (post_eval.h).
  std::vector<std::string> eval_routers;
};

struct Suite {
  std::string name;
  std::string description;
  std::string base_config;             // configs/NAME.json
  std::vector<std::string> base_sets;  // the shared budget: steps, schedule, evaluation
  std::vector<SuiteRun> runs;
  // false: a finished run's checkpoint is deleted once its result.json is written (the report
  // reads result.json and metrics.jsonl only). For suites whose checkpoints would not fit on the
  // machine's disk side by side (paper-gpu's model: 22.5 GB each with the AdamW moments).
  bool keep_checkpoints = true;
};

// Names of the suites `make_suite` knows.
std::vector<std::string> suite_names();
// quick: the same runs on the tiny model for a few steps (plumbing check, ~2 minutes).
Suite make_suite(const std::string& name, bool quick);

// The overrides of one run: the suite's base, then the run's own, then its seed.
std::vector<std::string> run_overrides(const Suite& suite, const SuiteRun& run);

}  // namespace ecmoe::compare
