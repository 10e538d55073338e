// The reduction over ranks, derived from the field list (ECMOE_ROUTING_STATS): vectors padded
// to the longest over the ranks, every kSum field summed in one integer and one floating-point
// buffer, every kMax field by its own maximum. Every rank makes the same calls in the same order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "moe/routing_stats.h"

namespace ecmoe {

namespace {

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};

template <class T, class F>
void for_each_element(T& v, F&& f) {
  if constexpr (std::is_arithmetic_v<T>) {
    f(v);
  } else {
    for (auto& x : v) f(x);
  }
}

}  // namespace

RoutingStats reduce_routing_stats(const RoutingStats& stats, const dist::Comm& comm) {
  if (!comm.parallel()) return stats;
  RoutingStats r = stats;
  // A rank that saw fewer experts (or no tokens) pads its vectors with zeros.
  for_each_routing_stat(
      [&](StatReduce, auto& v) {
        if constexpr (IsVector<std::decay_t<decltype(v)>>::value)
          v.resize(size_t(comm.allreduce_max(double(v.size()))), 0);
      },
      r);
  std::vector<int64_t> ints;
  std::vector<double> reals;
  const auto pack = [&](auto& x) {
    if constexpr (std::is_integral_v<std::decay_t<decltype(x)>>) {
      ints.push_back(int64_t(x));
    } else {
      reals.push_back(double(x));
    }
  };
  for_each_routing_stat(
      [&](StatReduce reduce, auto& v) {
        if (reduce == StatReduce::kSum) for_each_element(v, pack);
      },
      r);
  comm.allreduce_sum(std::span<int64_t>(ints));
  comm.allreduce_sum(std::span<double>(reals));
  size_t next_int = 0, next_real = 0;
  const auto unpack = [&](auto& x) {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_integral_v<T>) {
      x = T(ints[next_int++]);
    } else {
      x = T(reals[next_real++]);
    }
  };
  for_each_routing_stat(
      [&](StatReduce reduce, auto& v) {
        if (reduce == StatReduce::kSum) {
          for_each_element(v, unpack);
        } else {
          for_each_element(
              v, [&](auto& x) { x = std::decay_t<decltype(x)>(comm.allreduce_max(double(x))); });
        }
      },
      r);
  return r;
}

}  // namespace ecmoe
