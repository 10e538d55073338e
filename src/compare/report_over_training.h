// The comparison report's views across training, not just at its end: whether expert choice's
// convergence speed-up grows with training, how many experts take a token as training goes on,
// and how many epochs the budget is with the validation curves watched for overfitting. Each
// writes a Markdown section body (table and notes) and one verdict sentence.
#pragma once
#include <sstream>
#include <vector>

#include "compare/summary.h"

namespace ecmoe::compare {

// Fractions of the baseline's training at which the speed-up is measured.
inline const std::vector<double> kSpeedupFractions = {0.25, 0.5, 0.75, 1.0};

// Rows: each expert-choice variant against each baseline; columns: kSpeedupFractions.
void speedup_over_training_table(std::ostringstream& md,
                                 const std::vector<const VariantSummary*>& ec,
                                 const std::vector<const VariantSummary*>& baselines);
// "- EC c=2's step speed-up over top-2 at 25/50/75/100% of training: ... (it grew)."
void speedup_trend_verdict(std::ostringstream& md, const VariantSummary& ec,
                           const VariantSummary& baseline);

// Per expert-choice variant, the experts-per-token shares at up to `max_points` validation
// points spread over training (the last one always included).
void experts_per_token_over_training_table(std::ostringstream& md,
                                           const std::vector<const VariantSummary*>& ec,
                                           int max_points = 6);

// Per variant: tokens per run, epochs over the training split, best and final validation
// perplexity, final training loss against final validation loss.
void generalisation_table(std::ostringstream& md, const std::vector<const VariantSummary*>& rows);
// "- Epochs: ...; overfitting: ..." from the same numbers.
void generalisation_verdict(std::ostringstream& md, const std::vector<const VariantSummary*>& rows);

// The lowest point of a curve (the first one, on ties).
const EvalPoint& best_point(const std::vector<EvalPoint>& curve);

}  // namespace ecmoe::compare
