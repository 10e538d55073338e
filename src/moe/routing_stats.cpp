#include "moe/routing_stats.h"

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace ecmoe {

double RoutingStats::mean_experts_per_token() const {
  int64_t slots = 0;
  for (int64_t c : tokens_per_expert) slots += c;
  return tokens ? double(slots) / tokens : 0.0;
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

void count_plan(const RoutingPlan& plan, RoutingStats& stats) {
  stats.tokens = plan.n_tokens;
  stats.tokens_per_expert.assign(plan.n_experts, 0);
  for (int i = 0; i < plan.n_experts; ++i) stats.tokens_per_expert[i] = plan.expert_load(i);
  stats.experts_per_token.fill(0);
  stats.tokens_without_expert = 0;
  stats.max_experts_per_token = 0;
  for (int t = 0; t < plan.n_tokens; ++t) {
    const int count = plan.token_offsets[t + 1] - plan.token_offsets[t];
    ++stats.experts_per_token[std::min(count, 5)];
    if (count == 0) ++stats.tokens_without_expert;
    stats.max_experts_per_token = std::max(stats.max_experts_per_token, count);
  }
}

}  // namespace ecmoe
