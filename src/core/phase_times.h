// Wall time per named phase, accumulated over calls: the breakdown `ecmoe bench layer` reports
// (router, routing, dispatch, each GEMM, GELU, combine and their adjoints). Code that is timed
// takes a nullable PhaseTimes*; nullptr (the default everywhere but the benchmark) costs a
// branch per phase.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/timer.h"

namespace ecmoe {

class PhaseTimes {
 public:
  // Starts the clock for the next phase.
  void start() { last_ = now_seconds(); }
  // Adds the time since the last start() or lap() to `phase` and restarts the clock. Phases keep
  // the order in which they were first seen.
  void lap(const char* phase) {
    const double t = now_seconds();
    add(phase, t - last_);
    last_ = t;
  }
  void add(const std::string& phase, double seconds) {
    for (auto& [name, s] : entries_)
      if (name == phase) {
        s += seconds;
        return;
      }
    entries_.emplace_back(phase, seconds);
  }
  void clear() { entries_.clear(); }
  const std::vector<std::pair<std::string, double>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, double>> entries_;  // (phase, seconds)
  double last_ = 0;
};

// Null-safe helpers: the timed code calls these with the pointer it was given.
inline void phase_start(PhaseTimes* t) {
  if (t) t->start();
}
inline void phase_lap(PhaseTimes* t, const char* phase) {
  if (t) t->lap(phase);
}

}  // namespace ecmoe
