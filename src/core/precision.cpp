#include "core/precision.h"

#include "core/error.h"

namespace ecmoe {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  fail("unknown precision '", name, "' (expected fp32 or bf16)");
}

std::string precision_name(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

}  // namespace ecmoe
