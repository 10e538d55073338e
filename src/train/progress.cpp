#include "train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "core/timer.h"

namespace ecmoe {

std::string format_duration(double seconds) {
  const int64_t s = int64_t(std::llround(std::max(0.0, seconds)));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", (long long)(s / 3600),
                  (long long)(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%llds", (long long)s);
  return buf;
}

Progress::Progress(int64_t first_step, int64_t total_steps, int64_t interval, bool terminal,
                   std::FILE* out)
    : first_(first_step),
      total_(total_steps),
      interval_(std::max<int64_t>(1, interval)),
      terminal_(terminal),
      out_(out),
      start_time_(now_seconds()) {}

bool Progress::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string Progress::eta(int64_t step) const {
  const int64_t done = step - first_;
  if (done <= 0) return "?";
  const double per_step = (now_seconds() - start_time_) / double(done);
  return format_duration(per_step * double(total_ - step));
}

void Progress::update(int64_t step, double loss, double tokens_per_second) {
  if (!out_) return;
  char text[256];
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? int(kWidth * step / total_) : kWidth;
    std::string bar(std::size_t(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(std::size_t(kWidth - filled - 1), ' ');
    std::snprintf(text, sizeof(text), "\r[%s] step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s\x1b[K",
                  bar.c_str(), (long long)step, (long long)total_, loss, tokens_per_second,
                  eta(step).c_str());
    last_bar_ = text;
    std::fputs(text, out_);
    bar_drawn_ = true;
  } else {
    if (step % interval_ != 0 && step != total_) return;
    std::snprintf(text, sizeof(text), "step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s\n",
                  (long long)step, (long long)total_, loss, tokens_per_second, eta(step).c_str());
    std::fputs(text, out_);
  }
  std::fflush(out_);
}

void Progress::message(const std::string& line) {
  if (!out_) return;
  if (terminal_ && bar_drawn_) std::fputs("\r\x1b[K", out_);
  std::fprintf(out_, "%s\n", line.c_str());
  if (terminal_ && bar_drawn_) std::fputs(last_bar_.c_str(), out_);
  std::fflush(out_);
}

void Progress::finish() {
  if (!out_) return;
  if (terminal_ && bar_drawn_) std::fputs("\n", out_);
  bar_drawn_ = false;
  std::fflush(out_);
}

}  // namespace ecmoe
