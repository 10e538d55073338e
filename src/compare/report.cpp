#include "compare/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>

#include "compare/plots.h"
#include "compare/report_format.h"
#include "compare/report_over_training.h"
#include "compare/summary.h"
#include "core/error.h"
#include "io/atomic_file.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {

namespace {

std::string mean_std(const VariantSummary& s) {
  if (s.seeds < 2) return fmt("%.1f", s.perplexity_mean);
  return fmt("%.1f", s.perplexity_mean) + " ± " + fmt("%.1f", s.perplexity_std);
}

void perplexity_table(std::ostringstream& md, const std::vector<const VariantSummary*>& rows) {
  md << "| variant | router | seeds | final val. perplexity (mean ± std) | final val. loss | "
        "time per step | tokens/s |\n| --- | --- | --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : rows)
    md << "| " << s->variant << " | " << s->router << " | " << s->seeds << " | " << mean_std(*s)
       << " | " << fmt("%.3f", s->loss_mean) << " | " << fmt("%.0f ms", 1e3 * s->step_seconds)
       << " | " << fmt("%.0f", s->tokens_per_second) << " |\n";
  md << '\n';
}

// Steps (and seconds) each expert-choice variant needs to reach a baseline's final perplexity.
struct Reach {
  std::optional<double> steps, seconds;
};
Reach reach(const VariantSummary& v, const VariantSummary& baseline) {
  return {steps_to_reach(v.curve, baseline.perplexity_mean),
          seconds_to_reach(v.curve, baseline.perplexity_mean)};
}

std::string speedup_cell(const std::optional<double>& needed, double baseline_total,
                         const char* unit) {
  if (!needed) return "not reached (< 1x)";
  return fmt("%.0f ", *needed) + unit + " → **" + fmt("%.2fx", baseline_total / *needed) + "**";
}

void speedup_table(std::ostringstream& md, const std::vector<const VariantSummary*>& ec,
                   const std::vector<const VariantSummary*>& baselines) {
  md << "| expert choice variant |";
  for (const VariantSummary* b : baselines)
    md << " steps to " << b->variant << "'s final ppl (" << fmt("%.1f", b->perplexity_mean)
       << ") | seconds to it |";
  md << "\n| --- |";
  for (std::size_t i = 0; i < baselines.size(); ++i) md << " --- | --- |";
  md << '\n';
  for (const VariantSummary* v : ec) {
    md << "| " << v->variant << " |";
    for (const VariantSummary* b : baselines) {
      const Reach r = reach(*v, *b);
      md << ' ' << speedup_cell(r.steps, double(b->curve.back().step), "steps") << " | "
         << speedup_cell(r.seconds, b->curve.back().train_seconds, "s") << " |";
    }
    md << '\n';
  }
  md << '\n';
}

void histogram_table(std::ostringstream& md, const std::vector<const VariantSummary*>& ec) {
  md << "| variant | 0 | 1 | 2 | 3 | 4 | >4 | on 3-4 experts | mean |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : ec) {
    md << "| " << s->variant << " |";
    double mean = 0;
    for (int b = 0; b < 6; ++b) {
      md << ' ' << percent(s->share_of_tokens(b)) << " |";
      mean += (b == 5 ? 5 : b) * s->share_of_tokens(b);
    }
    md << ' ' << percent(s->share_of_tokens(3) + s->share_of_tokens(4)) << " | "
       << fmt("%.2f", mean) << (s->share_of_tokens(5) > 0 ? "+" : "") << " |\n";
  }
  md << "\n(The paper reports about 23% of tokens on 3-4 experts for EC c=2; `mean` counts >4 as "
        "5, so it is a lower bound when that column is non-zero.)\n\n";
}

void capacity_table(std::ostringstream& md, const std::vector<const VariantSummary*>& tc) {
  md << "| variant | choices dropped (training) | tokens with no expert (training) | mean of "
        "max demand / capacity (training) | choices dropped (final validation, c = eval "
        "factor) |\n| --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : tc)
    md << "| " << s->variant << " | " << percent(s->train_dropped_fraction) << " | "
       << percent(s->train_tokens_without_expert) << " | "
       << fmt("%.2f", s->train_max_demand_over_capacity) << " | "
       << percent(s->eval_dropped_fraction) << " |\n";
  md << '\n';
}

void decoder_table(std::ostringstream& md, const std::vector<const VariantSummary*>& rows) {
  md << "| trained as | evaluated with | seeds | final val. perplexity (mean ± std) | leakage: "
        "max abs Δ log p | mean abs Δ log p | Δ loss at positions ≤ t | experts per token | "
        "expert load share (min-max) | training time per step | generation (KV cache) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const VariantSummary* s : rows) {
    if (s->post_evals.empty()) {
      md << "| " << s->variant << " | " << s->router << " | " << s->seeds << " | " << mean_std(*s)
         << " | not measured | | | | | " << fmt("%.0f ms", 1e3 * s->step_seconds) << " | |\n";
      continue;
    }
    for (const PostEvalSummary& e : s->post_evals) {
      md << "| " << s->variant << " | " << e.router << " | " << s->seeds << " | "
         << fmt("%.1f", e.perplexity_mean)
         << (s->seeds > 1 ? " ± " + fmt("%.1f", e.perplexity_std) : std::string()) << " | "
         << (e.leak_max == 0 ? std::string("**0** (exact)") : fmt("%.3g", e.leak_max)) << " | "
         << fmt("%.3g", e.leak_mean) << " | " << fmt("%+.2g", e.loss_change) << " | "
         << fmt("%.2f", e.mean_experts_per_token) << " | " << percent(e.min_load_share) << " - "
         << percent(e.max_load_share) << " | " << fmt("%.0f ms", 1e3 * s->step_seconds) << " | "
         << (e.generation_tokens_per_second > 0
                 ? fmt("%.0f tokens/s", e.generation_tokens_per_second)
                 : std::string("not causal per token"))
         << " |\n";
    }
  }
  md << '\n';
}

// The verdict, from the numbers: the 2x claim, c = 1 and 0.5 against top-1, the cap's cost.
void verdict(std::ostringstream& md, const std::vector<VariantSummary>& all) {
  const VariantSummary* ec2 = find_variant(all, "EC c=2");
  const VariantSummary* top1 = find_variant(all, "top-1");
  const VariantSummary* top2 = find_variant(all, "top-2");
  md << "## Verdict\n\n";
  if (ec2 && top2) {
    const Reach r = reach(*ec2, *top2);
    const double total = double(top2->curve.back().step);
    const double gap = top2->perplexity_mean - ec2->perplexity_mean;
    const double spread = std::max(ec2->perplexity_std, top2->perplexity_std);
    md << "- **The 2x claim (EC c=2 against top-2) ";
    if (r.steps && total / *r.steps >= 2.0)
      md << "held here**: ";
    else
      md << "did not hold here**: ";
    if (r.steps)
      md << "EC c=2 reached top-2's final perplexity " << fmt("%.1f", top2->perplexity_mean)
         << " after " << fmt("%.0f", *r.steps) << " of " << fmt("%.0f", total) << " steps, a "
         << fmt("%.2fx", total / *r.steps) << " step speed-up";
    else
      md << "EC c=2 never reached top-2's final perplexity " << fmt("%.1f", top2->perplexity_mean);
    if (r.seconds)
      md << " (" << fmt("%.2fx", top2->curve.back().train_seconds / *r.seconds)
         << " in training time)";
    md << ". Final perplexity " << mean_std(*ec2) << " against " << mean_std(*top2)
       << " (difference " << fmt("%.1f", gap) << ", largest seed std " << fmt("%.1f", spread)
       << (std::fabs(gap) > 2 * spread ? ", larger than the seed spread"
                                       : ", within twice the seed spread")
       << ").\n";
  }
  if (ec2 && top2) speedup_trend_verdict(md, *ec2, *top2);
  if (ec2 && top1) {
    const Reach r = reach(*ec2, *top1);
    const double total = double(top1->curve.back().step);
    md << "- EC c=2 against top-1: ";
    if (r.steps)
      md << "top-1's final perplexity " << fmt("%.1f", top1->perplexity_mean) << " reached after "
         << fmt("%.0f", *r.steps) << " steps (" << fmt("%.2fx", total / *r.steps) << ").\n";
    else
      md << "top-1's final perplexity " << fmt("%.1f", top1->perplexity_mean)
         << " was not reached.\n";
  }
  if (top1) {
    for (const char* name : {"EC c=1", "EC c=0.5"})
      if (const VariantSummary* v = find_variant(all, name))
        md << "- " << name << " (" << fmt("%.1f", v->perplexity_mean) << ") "
           << (v->perplexity_mean < top1->perplexity_mean ? "beat" : "did not beat") << " top-1 ("
           << mean_std(*top1) << ")" << (v->seeds < 2 ? ", one seed" : "")
           << (std::fabs(v->perplexity_mean - top1->perplexity_mean) < 2 * top1->perplexity_std
                   ? ", within twice top-1's seed spread"
                   : "")
           << ".\n";
  }
  if (ec2) {
    for (const char* name : {"EC-CAP b=2", "EC-CAP b=3"})
      if (const VariantSummary* v = find_variant(all, name))
        md << "- " << name << ": final perplexity " << fmt("%.1f", v->perplexity_mean) << " ("
           << fmt("%+.1f%%", 100.0 * (v->perplexity_mean / ec2->perplexity_mean - 1))
           << " against EC c=2), " << fmt("%.2fx", v->step_seconds / ec2->step_seconds)
           << " its time per step.\n";
  }
  const VariantSummary* dec_ec = find_variant(all, "decoder EC c=2");
  if (dec_ec && dec_ec->post_evals.size() >= 2) {
    const PostEvalSummary& batch = dec_ec->post_evals[0];
    const PostEvalSummary& thresholds = dec_ec->post_evals[1];
    md << "- Decoder: batch expert choice " << (batch.leak_max > 0 ? "leaks" : "did not leak")
       << " (max |Δ log p| " << fmt("%.3g", batch.leak_max) << ", Δ loss "
       << fmt("%+.3g", batch.loss_change) << " nats when the future is replaced). The same "
       << "checkpoints evaluated causally with thresholds: perplexity "
       << fmt("%.1f", thresholds.perplexity_mean) << " against "
       << fmt("%.1f", batch.perplexity_mean) << " with batch routing, so the leak was worth "
       << fmt("%+.1f%%", 100.0 * (thresholds.perplexity_mean / batch.perplexity_mean - 1))
       << " perplexity here.";
    if (const VariantSummary* thr = find_variant(all, "decoder EC-threshold-trained c=2"))
      if (!thr->post_evals.empty())
        md << " Threshold-trained: " << fmt("%.1f", thr->post_evals[0].perplexity_mean) << ".";
    if (const VariantSummary* top2 = find_variant(all, "decoder top-2"))
      if (!top2->post_evals.empty())
        md << " Top-2 routed per sequence: " << fmt("%.1f", top2->post_evals[0].perplexity_mean)
           << (top2->post_evals[0].leak_max > 0
                   ? ", and it leaks too (max |Δ log p| " +
                         fmt("%.3g", top2->post_evals[0].leak_max) +
                         "): with capacity, later tokens' first choices are placed before earlier "
                         "tokens' second choices and can take their slots"
                   : std::string(", exactly causal"))
           << ".";
    md << '\n';
  }
  std::vector<const VariantSummary*> rows;
  for (const VariantSummary& v : all) rows.push_back(&v);
  generalisation_verdict(md, rows);
  md << '\n';
}

void copy_raw_metrics(const std::string& dir, const std::vector<std::string>& run_dirs) {
  for (const std::string& run : run_dirs) {
    const fs::path to = fs::path(dir) / fs::path(run).filename();
    fs::create_directories(to);
    for (const char* file : {"metrics.jsonl", kResultFile, "config.json"})
      if (fs::exists(fs::path(run) / file))
        fs::copy_file(fs::path(run) / file, to / file, fs::copy_options::overwrite_existing);
  }
}

}  // namespace

void write_report(const std::string& path, const std::vector<std::string>& run_dirs,
                  const ReportInfo& info) {
  ECMOE_CHECK(!run_dirs.empty(), "no runs to report");
  std::vector<RunRecord> runs;
  for (const std::string& dir : run_dirs) runs.push_back(load_run_record(dir));
  const std::vector<VariantSummary> all = summarize(runs);

  const fs::path report(path);
  const fs::path figures = report.parent_path() / report.stem();
  const std::string rel = report.stem().string();
  const PlotFiles plots = write_plots(figures.string(), all);
  copy_raw_metrics((figures / "runs").string(), run_dirs);

  std::vector<const VariantSummary*> encoder, decoder, ec, token_choice, baselines;
  for (const VariantSummary& s : all) {
    (s.family == "decoder" ? decoder : encoder).push_back(&s);
    if (s.family != "encoder") continue;
    if (is_expert_choice(s)) ec.push_back(&s);
    if (s.router == "top1" || s.router == "top2") {
      token_choice.push_back(&s);
      baselines.push_back(&s);
    }
  }

  std::ostringstream md;
  md << "# Pre-training comparison: " << info.suite_description << "\n\n"
     << "Made by `" << info.command << "` at commit `" << info.commit << "` on " << info.date
     << ", " << info.threads << " threads";
  if (info.ranks > 1) md << " on each of " << info.ranks << " MPI ranks";
  if (info.wall_seconds > 0) md << ", " << fmt("%.1f", info.wall_seconds / 60) << " minutes in all";
  if (info.report_only) {
    std::vector<std::string> commits;
    for (const RunRecord& r : runs)
      if (std::find(commits.begin(), commits.end(), r.commit) == commits.end())
        commits.push_back(r.commit.empty() ? "not recorded" : r.commit);
    md << " (report only); the runs themselves were made at commit";
    for (std::size_t i = 0; i < commits.size(); ++i) md << (i ? ", `" : " `") << commits[i] << '`';
  }
  md << ". Each variant differs from the others only in routing; all share the architecture, the "
        "data, the token budget, the schedule and the validation set. Seeds vary the "
        "initialisation and the order of the training windows. Perplexities are on the "
        "validation split (masked-LM loss for the encoder, next-token loss for the decoder), with "
        "each router's evaluation capacity factor. Time per step is the median over a run's "
        "steps (evaluations excluded), averaged over seeds.\n\n";
  if (info.runs_in_suite > int(runs.size()))
    md << "**Partial: " << runs.size() << " of the suite's " << info.runs_in_suite
       << " runs have finished.** The tables, figures and verdict cover those alone; a "
          "variant's cells average the seeds that finished, and a variant with none is "
          "absent.\n\n";
  verdict(md, all);
  if (!encoder.empty()) {
    md << "## Encoder (masked LM)\n\n";
    perplexity_table(md, encoder);
    md << "![validation perplexity against steps](" << rel << "/perplexity_vs_step.png)\n\n"
       << "![the second half, zoomed](" << rel << "/perplexity_vs_step_late.png)\n\n"
       << "![validation perplexity against training time](" << rel
       << "/perplexity_vs_time.png)\n\n";
  }
  if (!ec.empty() && !baselines.empty()) {
    md << "### Convergence speed-up of expert choice\n\nSteps (and training seconds) each "
          "expert-choice variant's seed-averaged validation curve needs to reach a baseline's "
          "final perplexity, interpolated between validation points; the ratio is the "
          "baseline's total over that.\n\n";
    speedup_table(md, ec, baselines);
    md << "Over training: at each fraction of a baseline's training, the steps an expert-choice "
          "variant needs to reach the perplexity the baseline had at that point, and the "
          "speed-up (the baseline's steps over that). A speed-up that grows from left to right "
          "means the advantage builds with training.\n\n";
    speedup_over_training_table(md, ec, baselines);
  }
  if (!ec.empty()) {
    md << "### Experts per token under expert choice\n\nShare of validation tokens taken by "
          "0, 1, 2, ... experts at the end of training, over the MoE layers and seeds.\n\n";
    histogram_table(md, ec);
    md << "![experts per token](" << rel << "/experts_per_token.png)\n\n"
       << "Over training (validation points spread over the run, summed over MoE layers and "
          "seeds):\n\n";
    experts_per_token_over_training_table(md, ec);
    md << "![experts per token over training](" << rel
       << "/experts_per_token_over_training.png)\n\n";
  }
  if (!token_choice.empty()) {
    md << "### Capacity in token choice\n\nShare of top-1/top-2 choices that found their "
          "expert full (training capacity factor), tokens left with no expert at all, and the "
          "busiest expert's demand over its capacity.\n\n";
    capacity_table(md, token_choice);
  }
  {
    std::vector<const VariantSummary*> rows;
    for (const VariantSummary& v : all) rows.push_back(&v);
    md << "## Training length and overfitting\n\n";
    generalisation_table(md, rows);
  }
  if (!decoder.empty()) {
    md << "## Decoder (next-token LM), leakage and thresholds\n\nEach decoder checkpoint is "
          "evaluated after training with its own routing and, for expert choice, with the "
          "thresholds it calibrated while training (docs/causal.md). Leakage: for half the "
          "validation batches and 4 cuts t each, every token after t is replaced and the "
          "log-probabilities of the targets at positions ≤ t are compared (evaluation mode); a "
          "causal model gives exactly 0, and Δ loss says what seeing the future was worth on "
          "those positions. Generation: greedy decoding of one sequence with the KV cache, which "
          "batch expert choice cannot do.\n\n";
    decoder_table(md, decoder);
    md << "![decoder validation perplexity](" << rel << "/decoder_perplexity_vs_step.png)\n\n";
  }
  md << "## Raw data\n\nEach run's `metrics.jsonl` (every step and validation, with per-layer "
        "routing statistics), `result.json` and `config.json` are in `"
     << rel << "/runs/`; the figures' data and gnuplot script are in `" << rel << "/`.\n";
  (void)plots;
  write_file_atomically(path, md.str());
}

}  // namespace ecmoe::compare
