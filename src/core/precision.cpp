#include "core/precision.h"

#include "core/error.h"
#include "core/gemm.h"

namespace ecmoe {

Precision native_precision() { return bf16_native() ? Precision::kBf16 : Precision::kFp32; }

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "auto") return native_precision();
  fail("unknown precision '", name, "' (expected fp32, bf16 or auto)");
}

std::string precision_name(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

}  // namespace ecmoe
