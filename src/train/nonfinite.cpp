#include "train/nonfinite.h"

#include <cmath>
#include <sstream>

namespace ecmoe {

std::optional<NonFinite> first_nonfinite(const FlatBuffer& buffer) {
  for (const TensorSpec& spec : buffer.table().specs()) {
    const float* x = buffer.get(spec.name);
    const int64_t n = spec.numel();
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) return NonFinite{spec.name, i, x[i]};
  }
  return std::nullopt;
}

std::string describe(const NonFinite& bad) {
  std::ostringstream s;
  s << bad.tensor << " (element " << bad.index << " is " << bad.value << ")";
  return s.str();
}

}  // namespace ecmoe
