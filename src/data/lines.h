// Line iteration over a text held in memory.
#pragma once
#include <cstddef>
#include <string_view>

namespace ecmoe::data {

// Calls f(line) for each '\n'-separated line, without the '\n' (and without a trailing '\r').
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line);
    start = end + 1;
  }
}

}  // namespace ecmoe::data
