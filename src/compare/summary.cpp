#include "compare/summary.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>

#include "compare/seed_stats.h"
#include "core/error.h"

namespace ecmoe::compare {

namespace {

std::vector<EvalPoint> mean_curve(const std::vector<const RunRecord*>& runs) {
  const std::vector<EvalPoint>& first = runs.front()->curve;
  std::vector<EvalPoint> out(first.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    double log_ppl = 0, seconds = 0, loss = 0, train_loss = 0;
    std::array<int64_t, 6> histogram{};
    for (const RunRecord* r : runs) {
      ECMOE_CHECK(r->curve.size() == first.size() && r->curve[i].step == first[i].step, "runs ",
                  runs.front()->run.name, " and ", r->run.name,
                  " of one variant were validated at different steps");
      log_ppl += std::log(r->curve[i].perplexity);
      seconds += r->curve[i].train_seconds;
      loss += r->curve[i].loss;
      train_loss += r->curve[i].train_loss;
      for (int b = 0; b < 6; ++b) histogram[b] += r->curve[i].experts_per_token[b];
    }
    const double n = double(runs.size());
    out[i] = {first[i].step,         seconds / n,    loss / n,
              std::exp(log_ppl / n), train_loss / n, histogram};
  }
  return out;
}

template <typename X>
std::optional<double> first_reach(const std::vector<EvalPoint>& curve, double perplexity, X x) {
  const double target = std::log(perplexity);
  for (std::size_t i = 0; i < curve.size(); ++i) {
    const double y = std::log(curve[i].perplexity);
    if (y > target) continue;
    if (i == 0) return x(curve[0]);
    const double y0 = std::log(curve[i - 1].perplexity);
    const double f = (y0 - target) / (y0 - y);
    return x(curve[i - 1]) + f * (x(curve[i]) - x(curve[i - 1]));
  }
  return std::nullopt;
}

}  // namespace

double share_of_tokens(const std::array<int64_t, 6>& experts_per_token, int bin) {
  int64_t total = 0;
  for (int64_t c : experts_per_token) total += c;
  return total ? double(experts_per_token[bin]) / double(total) : 0.0;
}

double VariantSummary::share_of_tokens(int bin) const {
  return compare::share_of_tokens(experts_per_token, bin);
}

std::vector<VariantSummary> summarize(const std::vector<RunRecord>& runs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const RunRecord*>> by_variant;
  for (const RunRecord& r : runs) {
    if (!by_variant.count(r.run.variant)) order.push_back(r.run.variant);
    by_variant[r.run.variant].push_back(&r);
  }
  std::vector<VariantSummary> out;
  for (const std::string& name : order) {
    const auto& group = by_variant[name];
    VariantSummary s;
    s.variant = name;
    s.family = group.front()->run.family;
    s.router = group.front()->router;
    s.seeds = int(group.size());
    std::vector<double> ppl, loss, step, tps, dropped, without, demand, eval_dropped;
    std::vector<double> leak_mean, leak_loss;
    double leak_max = 0;
    int64_t leak_positions = 0;
    for (const RunRecord* r : group) {
      ppl.push_back(r->final_perplexity);
      loss.push_back(r->final_loss);
      step.push_back(r->median_step_seconds);
      tps.push_back(r->median_step_seconds > 0 ? double(r->tokens_per_step) / r->median_step_seconds
                                               : 0.0);
      dropped.push_back(r->train_dropped_fraction);
      without.push_back(r->train_tokens_without_expert);
      demand.push_back(r->train_max_demand_over_capacity);
      eval_dropped.push_back(r->eval_dropped_fraction);
      for (int b = 0; b < 6; ++b) s.experts_per_token[b] += r->experts_per_token[b];
      if (r->leakage) {
        leak_max = std::max(leak_max, r->leakage->max_abs_logprob_change);
        leak_mean.push_back(r->leakage->mean_abs_logprob_change);
        leak_loss.push_back(r->leakage->loss_change);
        leak_positions += r->leakage->positions;
      }
    }
    s.perplexity_mean = mean(ppl);
    s.perplexity_std = sample_std(ppl);
    s.loss_mean = mean(loss);
    s.step_seconds = mean(step);
    s.tokens_per_step = group.front()->tokens_per_step;
    if (const int64_t split = group.front()->data_train_tokens; split > 0)
      s.epochs = double(group.front()->steps) * double(s.tokens_per_step) / double(split);
    s.tokens_per_second = mean(tps);
    s.train_dropped_fraction = mean(dropped);
    s.train_tokens_without_expert = mean(without);
    s.train_max_demand_over_capacity = mean(demand);
    s.eval_dropped_fraction = mean(eval_dropped);
    if (!leak_mean.empty())
      s.leakage = LeakageRecord{leak_max, mean(leak_mean), mean(leak_loss), leak_positions};
    s.curve = mean_curve(group);
    for (std::size_t k = 0; k < group.front()->post_evals.size(); ++k) {
      PostEvalSummary p;
      p.router = group.front()->post_evals[k].router;
      std::vector<double> ppl_k, leak_k, change_k, ept_k, gen_k;
      p.min_load_share = 1;
      for (const RunRecord* r : group) {
        ECMOE_CHECK(k < r->post_evals.size() && r->post_evals[k].router == p.router, "runs ",
                    group.front()->run.name, " and ", r->run.name,
                    " of one variant were evaluated differently");
        const PostEval& e = r->post_evals[k];
        ppl_k.push_back(e.perplexity);
        p.leak_max = std::max(p.leak_max, e.leakage.max_abs_logprob_change);
        leak_k.push_back(e.leakage.mean_abs_logprob_change);
        change_k.push_back(e.leakage.loss_change);
        ept_k.push_back(e.mean_experts_per_token);
        gen_k.push_back(e.generation_tokens_per_second);
        p.min_load_share = std::min(p.min_load_share, e.min_load_share);
        p.max_load_share = std::max(p.max_load_share, e.max_load_share);
      }
      p.perplexity_mean = mean(ppl_k);
      p.perplexity_std = sample_std(ppl_k);
      p.leak_mean = mean(leak_k);
      p.loss_change = mean(change_k);
      p.mean_experts_per_token = mean(ept_k);
      p.generation_tokens_per_second = mean(gen_k);
      s.post_evals.push_back(p);
    }
    out.push_back(std::move(s));
  }
  return out;
}

const VariantSummary* find_variant(const std::vector<VariantSummary>& summaries,
                                   const std::string& variant) {
  for (const VariantSummary& s : summaries)
    if (s.variant == variant) return &s;
  return nullptr;
}

std::optional<double> steps_to_reach(const std::vector<EvalPoint>& curve, double perplexity) {
  return first_reach(curve, perplexity, [](const EvalPoint& p) { return double(p.step); });
}

std::optional<double> seconds_to_reach(const std::vector<EvalPoint>& curve, double perplexity) {
  return first_reach(curve, perplexity, [](const EvalPoint& p) { return p.train_seconds; });
}

std::optional<double> perplexity_at(const std::vector<EvalPoint>& curve, double step) {
  for (std::size_t i = 0; i < curve.size(); ++i) {
    if (double(curve[i].step) < step) continue;
    if (double(curve[i].step) == step) return curve[i].perplexity;
    if (i == 0) return std::nullopt;
    const double x0 = double(curve[i - 1].step), x1 = double(curve[i].step);
    const double y0 = std::log(curve[i - 1].perplexity), y1 = std::log(curve[i].perplexity);
    return std::exp(y0 + (step - x0) / (x1 - x0) * (y1 - y0));
  }
  return std::nullopt;
}

std::vector<SpeedupPoint> speedup_over_training(const VariantSummary& variant,
                                                const VariantSummary& baseline,
                                                const std::vector<double>& fractions) {
  std::vector<SpeedupPoint> out;
  if (baseline.curve.empty()) return out;
  for (const double f : fractions) {
    SpeedupPoint p;
    p.fraction = f;
    p.baseline_step = f * double(baseline.curve.back().step);
    // At the end, the baseline's final perplexity as the final speed-up uses it (the mean over
    // seeds; the curve's points are geometric means).
    const auto ppl = f == 1.0 ? std::optional<double>(baseline.perplexity_mean)
                              : perplexity_at(baseline.curve, p.baseline_step);
    if (ppl) {
      p.baseline_perplexity = *ppl;
      p.steps = steps_to_reach(variant.curve, *ppl);
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace ecmoe::compare
