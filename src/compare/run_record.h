// What one finished run of a suite left behind, read back for the report: its result.json
// (written by the runner when the run completes) and the curves and routing statistics in its
// metrics.jsonl (docs/training.md). Reports are made from these files alone, so a report can be
// regenerated, or made from runs copied from another machine, without training again.
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "compare/suite.h"

namespace ecmoe::compare {

using Json = nlohmann::ordered_json;

inline constexpr const char* kResultFile = "result.json";

struct EvalPoint {
  int64_t step = 0;
  double train_seconds = 0;  // training time up to this step (evaluations excluded)
  double loss = 0;
  double perplexity = 0;
  // Mean training LM loss (aux losses excluded) over the steps logged since the previous
  // validation; 0 when none was logged. Its gap to `loss` shows overfitting.
  double train_loss = 0;
  // Tokens taken by 0, 1, 2, 3, 4, >4 experts in this validation, summed over MoE layers.
  std::array<int64_t, 6> experts_per_token{};
};

// How much a decoder's predictions at positions <= t move when the tokens after t change.
struct LeakageRecord {
  double max_abs_logprob_change = 0;
  double mean_abs_logprob_change = 0;
  double loss_change = 0;  // mean loss over the compared positions, after minus before
  int64_t positions = 0;
};

// A decoder checkpoint evaluated after training (post_eval.h).
struct PostEval {
  std::string router;  // the routing used
  double loss = 0;
  double perplexity = 0;
  LeakageRecord leakage;
  double mean_experts_per_token = 0;  // over MoE layers
  double min_load_share = 0;          // smallest and largest expert's share of the slots, over
  double max_load_share = 0;          // MoE layers (1/e each under expert choice)
  double generation_tokens_per_second = 0;  // greedy KV-cache decoding; 0: not causal per token
};

struct RunRecord {
  SuiteRun run;
  std::string commit;  // source revision that trained it ("" in results written before it was kept)
  std::string router;
  int64_t steps = 0;
  int64_t tokens_per_step = 0;
  int64_t data_train_tokens = 0;  // tokens in the data's training split (0: not recorded)
  double train_seconds = 0;
  double median_step_seconds = 0;
  double final_loss = 0;
  double final_perplexity = 0;
  std::vector<EvalPoint> curve;  // validation points in step order, the final one included
  // Final validation, summed over MoE layers: tokens with 0, 1, 2, 3, 4, >4 experts (the last
  // curve point's histogram).
  std::array<int64_t, 6> experts_per_token{};
  double eval_dropped_fraction = 0;  // final validation, mean over MoE layers
  // Training, mean over steps and MoE layers (token choice: choices lost to capacity).
  double train_dropped_fraction = 0;
  double train_tokens_without_expert = 0;  // fraction of tokens that no expert took
  double train_max_demand_over_capacity = 0;
  std::optional<LeakageRecord> leakage;  // under the trained router (decoders)
  std::vector<PostEval> post_evals;      // the trained router's first, then others
};

// Reads <dir>/result.json and <dir>/metrics.jsonl; throws ecmoe::Error naming the file on a
// missing or malformed one.
RunRecord load_run_record(const std::string& dir);

}  // namespace ecmoe::compare
