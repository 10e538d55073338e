// Arithmetic precision of the model's matrix products (docs/architecture.md, "Mixed precision"):
// fp32 everywhere, or bf16 GEMM operands with fp32 accumulation and fp32 everything else.
#pragma once
#include <string>

namespace ecmoe {

enum class Precision { kFp32, kBf16 };

Precision parse_precision(const std::string& name);  // "fp32" | "bf16"
std::string precision_name(Precision precision);

}  // namespace ecmoe
