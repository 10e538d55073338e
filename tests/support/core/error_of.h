// The message of the ecmoe::Error that f throws, or "(no error)": for tests of one-line errors,
// e.g. EXPECT_NE(error_of([&] { open(bad); }).find("checksum"), std::string::npos).
#pragma once
#include <functional>
#include <string>

#include "core/error.h"

namespace ecmoe::testing {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace ecmoe::testing
