// Arithmetic precision of the model's matrix products (docs/architecture.md, "Mixed precision"):
// fp32 everywhere, or bf16 GEMM operands with fp32 accumulation and fp32 everything else.
#pragma once
#include <string>

namespace ecmoe {

enum class Precision { kFp32, kBf16 };

// "fp32" | "bf16" | "auto". "auto" is resolved here, once: bf16 where this CPU multiplies bf16
// natively (bf16_native(): AVX512-BF16 or AMX, fallback not forced), else fp32. Configs, the
// checkpoint's metadata and metrics hold the resolved name, never "auto".
Precision parse_precision(const std::string& name);
std::string precision_name(Precision precision);
Precision native_precision();  // what "auto" resolves to on this machine

}  // namespace ecmoe
