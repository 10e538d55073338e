// Aggregates of a suite's runs, per variant (the seeds of one setting): final perplexity mean and
// spread, the mean validation curve, step times, routing statistics; and the "steps to reach"
// measure behind the paper's convergence speed-up.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compare/run_record.h"

namespace ecmoe::compare {

// One post-training evaluation (post_eval.h) over a variant's seeds.
struct PostEvalSummary {
  std::string router;
  double perplexity_mean = 0, perplexity_std = 0;
  double leak_max = 0;   // worst over seeds
  double leak_mean = 0;  // means over seeds from here on
  double loss_change = 0;
  double mean_experts_per_token = 0;
  double min_load_share = 0, max_load_share = 0;  // extremes over seeds
  double generation_tokens_per_second = 0;
};

struct VariantSummary {
  std::string variant;
  std::string family;
  std::string router;
  int seeds = 0;
  double perplexity_mean = 0;
  double perplexity_std = 0;  // sample standard deviation over seeds (0 with one seed)
  double loss_mean = 0;
  double step_seconds = 0;  // mean over seeds of each run's median step time
  int64_t tokens_per_step = 0;
  // Tokens one run trains on over the data's training split (0: the split's size was not
  // recorded, runs made before metrics' start line had train_tokens).
  double epochs = 0;
  double tokens_per_second = 0;
  // Validation points averaged over seeds: perplexity as exp(mean log-perplexity), seconds and
  // training loss as means, the experts-per-token histograms summed.
  std::vector<EvalPoint> curve;
  std::array<int64_t, 6> experts_per_token{};  // final validation, summed over layers and seeds
  double train_dropped_fraction = 0;           // means over seeds
  double train_tokens_without_expert = 0;
  double train_max_demand_over_capacity = 0;
  double eval_dropped_fraction = 0;
  std::optional<LeakageRecord> leakage;  // worst max, mean of means, mean loss change
  std::vector<PostEvalSummary> post_evals;

  double share_of_tokens(int bin) const;  // experts_per_token[bin] / tokens
};

// experts_per_token[bin] / its total (0 for an empty histogram).
double share_of_tokens(const std::array<int64_t, 6>& experts_per_token, int bin);

// One summary per variant, in the order the variants first appear. Throws if the seeds of one
// variant were evaluated at different steps.
std::vector<VariantSummary> summarize(const std::vector<RunRecord>& runs);

const VariantSummary* find_variant(const std::vector<VariantSummary>& summaries,
                                   const std::string& variant);

// The first step (resp. training second) at which the curve reaches `perplexity` or lower,
// interpolating linearly in log-perplexity between validation points; none if it never does.
std::optional<double> steps_to_reach(const std::vector<EvalPoint>& curve, double perplexity);
std::optional<double> seconds_to_reach(const std::vector<EvalPoint>& curve, double perplexity);

// The curve's perplexity at `step`, interpolated linearly in log-perplexity between validation
// points; none before the first point or after the last.
std::optional<double> perplexity_at(const std::vector<EvalPoint>& curve, double step);

// Does the convergence speed-up grow with training? At a fraction f of the baseline's training,
// the steps a variant needs to reach the perplexity the baseline had then; the speed-up is the
// baseline's steps over that. At f = 1 the baseline's perplexity is its final mean over seeds, so
// that point is the report's final-perplexity speed-up.
struct SpeedupPoint {
  double fraction = 0;
  double baseline_step = 0;
  double baseline_perplexity = 0;  // 0 when the baseline has no validation point that early
  std::optional<double> steps;     // none: not reached
  std::optional<double> speedup() const {
    if (!steps || *steps <= 0) return std::nullopt;
    return baseline_step / *steps;
  }
};
std::vector<SpeedupPoint> speedup_over_training(const VariantSummary& variant,
                                                const VariantSummary& baseline,
                                                const std::vector<double>& fractions);

}  // namespace ecmoe::compare
