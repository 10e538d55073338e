// Finding where a run went non-finite: the first tensor (in table order) holding an inf or NaN,
// so a failed step can say "gradient of layers.1.ffn.experts.w1 is nan" instead of just "nan".
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/tensor_table.h"

namespace ecmoe {

struct NonFinite {
  std::string tensor;
  int64_t index = 0;  // first bad element, flat within the tensor
  float value = 0;
};

std::optional<NonFinite> first_nonfinite(const FlatBuffer& buffer);

// "layers.1.ffn.experts.w1 (element 17 is nan)"
std::string describe(const NonFinite& bad);

}  // namespace ecmoe
