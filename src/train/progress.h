// Training progress on stderr: on a terminal, one bar redrawn in place (step, loss, tokens/s,
// ETA); otherwise (a log file, a pipe, CI) a plain line every `interval` steps, since carriage
// returns make a mess of logs.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace ecmoe {

class Progress {
 public:
  // Steps first_step+1 .. total_steps are to come; `terminal` picks the bar; out nullptr: silent.
  Progress(int64_t first_step, int64_t total_steps, int64_t interval, bool terminal,
           std::FILE* out = stderr);
  static bool stderr_is_terminal();

  // After step `step` (1-based: steps done) with its loss and measured speed.
  void update(int64_t step, double loss, double tokens_per_second);
  // A line of its own (an evaluation, a checkpoint), without breaking the bar.
  void message(const std::string& line);
  void finish();

 private:
  std::string eta(int64_t step) const;
  int64_t first_, total_, interval_;
  bool terminal_;
  std::FILE* out_;
  double start_time_;
  bool bar_drawn_ = false;
  std::string last_bar_;
};

// "1h02m", "3m05s", "12s"
std::string format_duration(double seconds);

}  // namespace ecmoe
