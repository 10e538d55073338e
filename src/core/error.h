// One error type for every user-facing failure: a single line naming the problem.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ecmoe {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(detail::concat(parts...));
}

}  // namespace ecmoe

// Checks a condition that depends on user input or configuration; the message parts are streamed.
#define ECMOE_CHECK(cond, ...)               \
  do {                                       \
    if (!(cond)) ::ecmoe::fail(__VA_ARGS__); \
  } while (0)
