#include "compare/report_over_training.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "compare/report_format.h"

namespace ecmoe::compare {

namespace {

std::string speedup_cell(const SpeedupPoint& p) {
  if (p.baseline_perplexity <= 0) return "no validation yet";
  const auto ratio = p.speedup();
  if (!ratio) return "not reached (< 1x)";
  return "**" + fmt("%.2fx", *ratio) + "** (" + fmt("%.0f", *p.steps) + " steps for " +
         fmt("%.0f", p.baseline_step) + ")";
}

std::string percent_label(double fraction) { return fmt("%.0f%%", 100.0 * fraction); }

// Indices of up to `max_points` curve points spread evenly over training, the first and the last
// included.
std::vector<std::size_t> spread_points(std::size_t size, int max_points) {
  std::vector<std::size_t> out;
  if (size == 0 || max_points <= 0) return out;
  const std::size_t n = std::min<std::size_t>(size, std::size_t(max_points));
  if (n == 1) return {size - 1};
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (k * (size - 1) + (n - 1) / 2) / (n - 1);  // round(k·(size−1)/(n−1))
    if (out.empty() || out.back() != i) out.push_back(i);
  }
  return out;
}

double relative_rise(const VariantSummary& s) {
  return s.curve.back().perplexity / best_point(s.curve).perplexity - 1;
}

}  // namespace

const EvalPoint& best_point(const std::vector<EvalPoint>& curve) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < curve.size(); ++i)
    if (curve[i].perplexity < curve[best].perplexity) best = i;
  return curve[best];
}

void speedup_over_training_table(std::ostringstream& md,
                                 const std::vector<const VariantSummary*>& ec,
                                 const std::vector<const VariantSummary*>& baselines) {
  md << "| expert choice variant | against |";
  for (const double f : kSpeedupFractions) md << ' ' << percent_label(f) << " of training |";
  md << "\n| --- | --- |";
  for (std::size_t i = 0; i < kSpeedupFractions.size(); ++i) md << " --- |";
  md << '\n';
  for (const VariantSummary* b : baselines) {
    md << "| *" << b->variant << "'s perplexity then* | |";
    for (const SpeedupPoint& p : speedup_over_training(*b, *b, kSpeedupFractions))
      md << ' '
         << (p.baseline_perplexity > 0
                 ? fmt("%.1f", p.baseline_perplexity) + " at step " + fmt("%.0f", p.baseline_step)
                 : std::string("-"))
         << " |";
    md << '\n';
    for (const VariantSummary* v : ec) {
      md << "| " << v->variant << " | " << b->variant << " |";
      for (const SpeedupPoint& p : speedup_over_training(*v, *b, kSpeedupFractions))
        md << ' ' << speedup_cell(p) << " |";
      md << '\n';
    }
  }
  md << '\n';
}

void speedup_trend_verdict(std::ostringstream& md, const VariantSummary& ec,
                           const VariantSummary& baseline) {
  const std::vector<SpeedupPoint> points = speedup_over_training(ec, baseline, kSpeedupFractions);
  md << "- Does the speed-up grow with training? " << ec.variant << "'s step speed-up over "
     << baseline.variant << " at";
  std::vector<double> ratios;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto r = points[i].speedup();
    md << (i ? ", " : " ") << percent_label(points[i].fraction) << ": "
       << (points[i].baseline_perplexity <= 0 ? std::string("-")
           : r                                ? fmt("%.2fx", *r)
                                              : std::string("< 1x"));
    if (r) ratios.push_back(*r);
  }
  md << " of " << baseline.variant << "'s training";
  if (ratios.size() >= 2) {
    const double first = ratios.front(), last = ratios.back();
    if (last > first * 1.05)
      md << ": it grew (" << fmt("%.2fx", first) << " → " << fmt("%.2fx", last) << ")";
    else if (last < first / 1.05)
      md << ": it shrank (" << fmt("%.2fx", first) << " → " << fmt("%.2fx", last) << ")";
    else
      md << ": it stayed within 5% (" << fmt("%.2fx", first) << " → " << fmt("%.2fx", last) << ")";
  }
  md << ".\n";
}

void experts_per_token_over_training_table(std::ostringstream& md,
                                           const std::vector<const VariantSummary*>& ec,
                                           int max_points) {
  md << "| variant | step | 0 experts | 1 | 2 | 3-4 | >4 |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : ec)
    for (const std::size_t i : spread_points(s->curve.size(), max_points)) {
      const auto& h = s->curve[i].experts_per_token;
      md << "| " << s->variant << " | " << s->curve[i].step << " | "
         << percent(share_of_tokens(h, 0)) << " | " << percent(share_of_tokens(h, 1)) << " | "
         << percent(share_of_tokens(h, 2)) << " | "
         << percent(share_of_tokens(h, 3) + share_of_tokens(h, 4)) << " | "
         << percent(share_of_tokens(h, 5)) << " |\n";
    }
  md << '\n';
}

void generalisation_table(std::ostringstream& md, const std::vector<const VariantSummary*>& rows) {
  md << "| variant | tokens per run | epochs | best val. perplexity (step) | final val. "
        "perplexity | rise from best | final training loss | final val. loss | val. − "
        "training |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : rows) {
    const EvalPoint& best = best_point(s->curve);
    const EvalPoint& last = s->curve.back();
    md << "| " << s->variant << " | "
       << fmt("%.3gM", double(last.step) * double(s->tokens_per_step) / 1e6) << " | "
       << (s->epochs > 0 ? fmt("%.2f", s->epochs) : std::string("not recorded")) << " | "
       << fmt("%.1f", best.perplexity) << " (" << best.step << ") | "
       << fmt("%.1f", last.perplexity) << " | " << fmt("%+.1f%%", 100.0 * relative_rise(*s))
       << " | " << (last.train_loss > 0 ? fmt("%.3f", last.train_loss) : std::string("-")) << " | "
       << fmt("%.3f", last.loss) << " | "
       << (last.train_loss > 0 ? fmt("%+.3f", last.loss - last.train_loss) : std::string("-"))
       << " |\n";
  }
  md << "\n(Training loss: the mean LM loss of the steps since the previous validation, "
        "auxiliary losses excluded, on the training windows; validation loss on the fixed "
        "validation batches. A growing positive gap, or a validation perplexity that rises from "
        "its best, is overfitting.)\n\n";
}

void generalisation_verdict(std::ostringstream& md,
                            const std::vector<const VariantSummary*>& rows) {
  if (rows.empty()) return;
  double min_epochs = 0, max_epochs = 0;
  for (const VariantSummary* s : rows)
    if (s->epochs > 0) {
      min_epochs = min_epochs > 0 ? std::min(min_epochs, s->epochs) : s->epochs;
      max_epochs = std::max(max_epochs, s->epochs);
    }
  md << "- Budget and overfitting: ";
  const bool epochs_known = max_epochs > 0;
  if (epochs_known)
    md << "each run saw its training split "
       << (max_epochs - min_epochs < 0.005
               ? fmt("%.2f", max_epochs)
               : fmt("%.2f", min_epochs) + "-" + fmt("%.2f", max_epochs))
       << " times. ";
  std::vector<const VariantSummary*> rose;
  for (const VariantSummary* s : rows)
    if (relative_rise(*s) > 0.01) rose.push_back(s);
  if (rose.empty()) {
    md << (epochs_known ? "No" : "no") << " variant's validation perplexity rose more than 1% "
       << "above its best, so the comparison is not distorted by overfitting.\n";
    return;
  }
  md << (epochs_known ? "Validation" : "validation")
     << " perplexity rose more than 1% above its best for";
  for (std::size_t i = 0; i < rose.size(); ++i)
    md << (i ? ", " : " ") << rose[i]->variant << " (best "
       << fmt("%.1f", best_point(rose[i]->curve).perplexity) << " at step "
       << best_point(rose[i]->curve).step << ", final "
       << fmt("%.1f", rose[i]->curve.back().perplexity) << ")";
  md << ": those runs overfit, and their final perplexities understate them; compare their best "
        "points as well.\n";
}

}  // namespace ecmoe::compare
