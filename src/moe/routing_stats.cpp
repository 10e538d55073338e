#include "moe/routing_stats.h"

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace ecmoe {

int64_t RoutingStats::assigned_slots() const {
  int64_t slots = 0;
  for (int64_t c : tokens_per_expert) slots += c;
  return slots;
}

double RoutingStats::mean_experts_per_token() const {
  return tokens ? double(assigned_slots()) / tokens : 0.0;
}

std::vector<double> RoutingStats::mean_kth_scores() const {
  std::vector<double> mean;
  if (kth_score_groups == 0) return mean;
  for (double s : kth_score_sum) mean.push_back(s / double(kth_score_groups));
  return mean;
}

namespace {

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};

}  // namespace

void RoutingStats::merge(const RoutingStats& o) {
  for_each_routing_stat(
      [](StatReduce reduce, auto& mine, const auto& theirs) {
        using T = std::decay_t<decltype(mine)>;
        if constexpr (std::is_arithmetic_v<T>) {
          mine = reduce == StatReduce::kSum ? mine + theirs : std::max(mine, theirs);
        } else {  // vectors and arrays: summed element-wise
          if constexpr (IsVector<T>::value)
            if (mine.size() < theirs.size()) mine.resize(theirs.size(), 0);
          for (size_t i = 0; i < theirs.size(); ++i) mine[i] += theirs[i];
        }
      },
      *this, o);
}

RoutingStats RoutingStats::maxima_only() const {
  RoutingStats r = *this;
  for_each_routing_stat(
      [](StatReduce reduce, auto& v) {
        if (reduce != StatReduce::kSum) return;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_arithmetic_v<T>) {
          v = 0;
        } else {
          std::fill(v.begin(), v.end(), 0);
        }
      },
      r);
  return r;
}

RoutingStats plan_counts(int n_tokens, const std::vector<int>& expert_offsets,
                         const ExpertsPerTokenHistogram& experts_per_token,
                         int max_experts_per_token) {
  RoutingStats stats;
  stats.tokens = n_tokens;
  const int e = expert_offsets.empty() ? 0 : int(expert_offsets.size()) - 1;
  stats.tokens_per_expert.assign(e, 0);
  for (int i = 0; i < e; ++i)
    stats.tokens_per_expert[i] = expert_offsets[i + 1] - expert_offsets[i];
  stats.experts_per_token = experts_per_token;
  stats.tokens_without_expert = experts_per_token[0];
  stats.max_experts_per_token = max_experts_per_token;
  return stats;
}

RoutingStats plan_counts(const RoutingPlan& plan) {
  ExpertsPerTokenHistogram histogram{};
  int max_experts = 0;
  for (int t = 0; t < plan.n_tokens; ++t) {
    const int count = plan.token_offsets[t + 1] - plan.token_offsets[t];
    ++histogram[std::min(count, 5)];
    max_experts = std::max(max_experts, count);
  }
  return plan_counts(plan.n_tokens, plan.expert_offsets, histogram, max_experts);
}

void count_plan(const RoutingPlan& plan, RoutingStats& stats) {
  RoutingStats counts = plan_counts(plan);
  stats.tokens = counts.tokens;
  stats.tokens_per_expert = std::move(counts.tokens_per_expert);
  stats.experts_per_token = counts.experts_per_token;
  stats.tokens_without_expert = counts.tokens_without_expert;
  stats.max_experts_per_token = counts.max_experts_per_token;
}

}  // namespace ecmoe
