// Mean and sample standard deviation over a handful of seeds.
#pragma once
#include <cmath>
#include <vector>

namespace ecmoe::compare {

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

// 0 with fewer than two values.
inline double sample_std(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

}  // namespace ecmoe::compare
