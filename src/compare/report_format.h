// Number formatting shared by the comparison reports' Markdown tables.
#pragma once
#include <cstdio>
#include <string>

namespace ecmoe::compare {

// printf-style formatting of one number, e.g. fmt("%.2fx", 1.5) -> "1.50x".
inline std::string fmt(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

inline std::string percent(double fraction) { return fmt("%.1f%%", 100.0 * fraction); }

}  // namespace ecmoe::compare
